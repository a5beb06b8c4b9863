//! `mlmf completions SHELL` and `mlmf man`: shell completion scripts and man pages, generated
//! from the command line's own definition (clap_complete, clap_mangen), so they never drift.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `mlmf completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `mlmf man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `mlmf.1` and one page per subcommand (`mlmf-serve.1`, ...) into this directory
    /// instead of printing `mlmf.1`.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Prints the completion script of `a.shell` for the command line `cmd`.
pub fn completions(a: CompletionsArgs, mut cmd: clap::Command) -> Result<(), String> {
    clap_complete::generate(a.shell, &mut cmd, "mlmf", &mut std::io::stdout());
    Ok(())
}

/// Prints `mlmf.1` of the command line `cmd`, or writes every page into `--out-dir`.
pub fn man(a: ManArgs, cmd: clap::Command) -> Result<(), String> {
    match a.out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).map_err(|e| e.to_string()),
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| format!("{}: {e}", dir.display()))
        }
    }
}
