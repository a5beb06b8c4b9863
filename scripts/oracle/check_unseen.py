"""Checks `mlmf run` against PyTorch `transformers` on checkpoints no test has seen.

Builds small random models of each architecture with shapes and options the fixtures do
not cover (untied heads, n_inner, inverse-layer-idx scaling, GQA with head_dim != hidden /
heads, q/k/v/o and MLP biases, tied LLaMA head, llama3 RoPE scaling, BERT without pooler or
with a `bert.` prefix, BF16 storage, sharded indexes), saves them with `save_pretrained`,
computes reference outputs in float32 with `transformers`, runs `mlmf run` under several
strategies and compares.

Needs the oracle venv (tests/fixtures/scripts/setup_oracle_env.sh, ~2.5 GB download):
    bash tests/fixtures/scripts/setup_oracle_env.sh /tmp/oracle
    /tmp/oracle/bin/python scripts/oracle/check_unseen.py target/debug/mlmf /tmp/unseen [--device flex]
"""
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import transformers as tf

MLMF, WORK, MLMF_ARGS = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
torch.manual_seed(1234)


def perturb(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                if any(k in name for k in ("norm", "ln_", "LayerNorm")):
                    p.copy_(1 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            elif any(k in name for k in ("q_proj", "k_proj", "query", "key", "c_attn")):
                p.mul_(2.0)


def read_safetensors(path):
    b = Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s : 8 + n + e], dtype=np.float32).reshape(v["shape"])
    return out


CASES = [
    # name, model class, config, storage dtype, max shard size, model kwargs, strategies
    ("gpt2_untied_ninner_gelu", tf.GPT2LMHeadModel,
     tf.GPT2Config(n_layer=3, n_embd=96, n_head=6, n_inner=200, vocab_size=300, n_positions=64,
                   activation_function="gelu", tie_word_embeddings=False,
                   scale_attn_by_inverse_layer_idx=True, initializer_range=0.05),
     torch.float32, None, {}, ["none", "layer:1", "pipeline:2", "tensor:2", "tensor:3", "tensor:6"]),
    ("gpt2_bf16_sharded", tf.GPT2LMHeadModel,
     tf.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=500, n_positions=32, initializer_range=0.05),
     torch.bfloat16, "60KB", {}, ["none", "pipeline:3", "tensor:4"]),
    ("gpt2model_relu", tf.GPT2Model,
     tf.GPT2Config(n_layer=2, n_embd=48, n_head=4, vocab_size=100, n_positions=16,
                   activation_function="relu", initializer_range=0.05),
     torch.float32, None, {}, None),
    ("llama_gqa_bias_tied", tf.LlamaForCausalLM,
     tf.LlamaConfig(hidden_size=96, intermediate_size=250, num_hidden_layers=3, num_attention_heads=6,
                    num_key_value_heads=2, head_dim=24, vocab_size=400, max_position_embeddings=64,
                    attention_bias=True, mlp_bias=True, tie_word_embeddings=True, rope_theta=500000.0,
                    initializer_range=0.05),
     torch.float32, "100KB", {}, ["none", "layer:2", "pipeline:3", "tensor:2"]),
    ("llama_bf16_llama3_rope", tf.LlamaForCausalLM,
     tf.LlamaConfig(hidden_size=128, intermediate_size=300, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=300, max_position_embeddings=128,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 16},
                    initializer_range=0.05),
     torch.bfloat16, None, {}, ["none", "pipeline:2", "tensor:4"]),
    ("llama_mqa", tf.LlamaForCausalLM,
     tf.LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=1, vocab_size=200, max_position_embeddings=32, initializer_range=0.05),
     torch.float32, None, {}, ["none", "layer:1"]),
    ("bert_nopooler_gelunew", tf.BertModel,
     tf.BertConfig(hidden_size=96, num_hidden_layers=3, num_attention_heads=6, intermediate_size=250,
                   vocab_size=300, max_position_embeddings=64, type_vocab_size=3, hidden_act="gelu_new",
                   initializer_range=0.05),
     torch.float32, None, {"add_pooling_layer": False}, ["none", "layer:2", "tensor:3"]),
    ("bert_mlm_prefixed_bf16", tf.BertForMaskedLM,
     tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                   vocab_size=200, max_position_embeddings=32, initializer_range=0.05),
     torch.bfloat16, "40KB", {}, ["none", "pipeline:2", "tensor:2"]),
]

failures = []
for name, cls, cfg, store, shard, kwargs, strategies in CASES:
    model = cls(cfg, **kwargs).eval()
    perturb(model)
    d = WORK / name
    model.to(store).save_pretrained(d, max_shard_size=shard or "10GB")
    ref_model = cls.from_pretrained(d, dtype=torch.float32, **kwargs).eval()
    seq = 9
    ids = torch.randint(0, cfg.vocab_size, (1, seq))
    is_bert = "bert" in name
    extra = []
    with torch.no_grad():
        if is_bert:
            tt = torch.randint(0, cfg.type_vocab_size, (1, seq))
            mask = torch.ones(1, seq, dtype=torch.long)
            mask[0, -2:] = 0
            base = ref_model.bert if hasattr(ref_model, "bert") else ref_model
            out = base(input_ids=ids, token_type_ids=tt, attention_mask=mask)
            ref = {"last_hidden_state": out.last_hidden_state}
            if out.pooler_output is not None:
                ref["pooler_output"] = out.pooler_output
            extra = ["--token-type-ids", ",".join(map(str, tt[0].tolist())),
                     "--attention-mask", ",".join(map(str, mask[0].tolist()))]
        else:
            out = ref_model(input_ids=ids, output_hidden_states=True)
            ref = {"last_hidden_state": out.hidden_states[-1]}
            if hasattr(out, "logits"):
                ref["logits"] = out.logits
    for s in strategies or ["none", "pipeline:2"]:
        dest = d / f"out-{s.replace(':', '_')}.safetensors"
        r = subprocess.run([MLMF, "run", "--model", str(d), "--input-ids", ",".join(map(str, ids[0].tolist())),
                            "--strategy", s, "--out", str(dest), *extra, *MLMF_ARGS], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{name} {s}: mlmf failed: {r.stderr.strip()}")
            continue
        got = read_safetensors(dest)
        for k, v in ref.items():
            v = v.numpy()
            if k not in got:
                failures.append(f"{name} {s}: no {k}")
                continue
            diff = np.abs(got[k] - v).max()
            ok = diff <= 1e-4 + 1e-4 * np.abs(v).max()
            print(f"{'ok  ' if ok else 'FAIL'} {name:<26} {s:<11} {k:<18} max|diff| {diff:.2e}")
            if not ok:
                failures.append(f"{name} {s} {k}: {diff:.2e}")

print(f"\n{len(failures)} failure(s)")
for f in failures:
    print("  " + f)
sys.exit(1 if failures else 0)
