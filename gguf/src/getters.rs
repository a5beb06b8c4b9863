//! Typed metadata getters of [`GgufFile`]: `Ok(None)` for an absent key, `BadMetadata`
//! naming the key for a value of the wrong type.

use crate::{GgufError, GgufFile, MetaValue};

impl GgufFile {
    /// The value of `key`, `Ok(None)` when absent, or `BadMetadata` naming `key` and saying
    /// what it expected.
    fn typed<'a, T: ?Sized>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a MetaValue) -> Option<&'a T>,
    ) -> Result<Option<&'a T>, GgufError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        match convert(value) {
            Some(v) => Ok(Some(v)),
            None => Err(self.bad(key, format!("expected {expected}, found a {}", value.type_name()))),
        }
    }

    /// A `BadMetadata` error about `key` of this file.
    pub fn bad(&self, key: &str, message: String) -> GgufError {
        GgufError::BadMetadata { path: self.path.clone(), key: key.to_string(), message }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", |v| match v {
            MetaValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// An integer value of any type that is not negative.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        let Some(n) = value.as_integer() else {
            return Err(self.bad(key, format!("expected an unsigned integer, found a {}", value.type_name())));
        };
        u64::try_from(n).map(Some).map_err(|_| self.bad(key, format!("expected an unsigned integer, found {n}")))
    }

    /// A float value, or an integer one as a float.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        match *value {
            MetaValue::F32(v) => Ok(Some(v.into())),
            MetaValue::F64(v) => Ok(Some(v)),
            _ => match value.as_integer() {
                Some(n) => Ok(Some(n as f64)),
                None => Err(self.bad(key, format!("expected a number, found a {}", value.type_name()))),
            },
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.bad(key, format!("expected a bool, found a {}", other.type_name()))),
        }
    }

    /// An array of strings. An empty array of any element type is an empty slice.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        self.typed(key, "an array of strings", |v| match v {
            MetaValue::StringArray(items) => Some(items.as_slice()),
            v if v.array_len() == Some(0) => Some(&[]),
            _ => None,
        })
    }

    /// An array of integers of any width. An empty array of any element type is an empty
    /// slice.
    pub fn get_int_array(&self, key: &str) -> Result<Option<&[i64]>, GgufError> {
        self.typed(key, "an array of integers", |v| match v {
            MetaValue::IntArray(items) => Some(items.as_slice()),
            v if v.array_len() == Some(0) => Some(&[]),
            _ => None,
        })
    }

    /// An array of floats of either width. An empty array of any element type is an empty
    /// slice.
    pub fn get_float_array(&self, key: &str) -> Result<Option<&[f64]>, GgufError> {
        self.typed(key, "an array of floats", |v| match v {
            MetaValue::FloatArray(items) => Some(items.as_slice()),
            v if v.array_len() == Some(0) => Some(&[]),
            _ => None,
        })
    }

    /// An array of booleans. An empty array of any element type is an empty slice.
    pub fn get_bool_array(&self, key: &str) -> Result<Option<&[bool]>, GgufError> {
        self.typed(key, "an array of bools", |v| match v {
            MetaValue::BoolArray(items) => Some(items.as_slice()),
            v if v.array_len() == Some(0) => Some(&[]),
            _ => None,
        })
    }

    /// `general.architecture`, which every model file has.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")?
            .ok_or_else(|| self.bad("general.architecture", "is missing; every GGUF model has it".to_string()))
    }
}
