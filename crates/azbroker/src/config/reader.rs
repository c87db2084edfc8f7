//! A small reader over a parsed TOML table that records every problem it meets (with the key's
//! dotted path) instead of stopping at the first, so the user sees all mistakes at once.

use toml::{Table, Value};

/// Problems found so far, in file order.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn push(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{path}: {msg}"));
    }
}

/// A view of one table at `path`.
pub struct Section<'a> {
    pub path: String,
    table: &'a Table,
}

impl<'a> Section<'a> {
    pub fn new(path: impl Into<String>, table: &'a Table) -> Self {
        Self { path: path.into(), table }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// Reports every key not in `allowed`.
    pub fn only(&self, allowed: &[&str], p: &mut Problems) {
        for key in self.table.keys() {
            if !allowed.contains(&key.as_str()) {
                p.push(&self.key_path(key), format!("unknown key (expected one of: {})", allowed.join(", ")));
            }
        }
    }

    /// A sub-table; a missing key is an empty table.
    pub fn table(&self, key: &str, p: &mut Problems) -> Option<Section<'a>> {
        match self.table.get(key) {
            None => None,
            Some(Value::Table(t)) => Some(Section::new(self.key_path(key), t)),
            Some(other) => {
                p.push(&self.key_path(key), format!("expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// Every entry of a table of tables (`[logins.NAME]`), in file order.
    pub fn entries(&self, p: &mut Problems) -> Vec<(String, Section<'a>)> {
        let mut out = Vec::new();
        for (name, value) in self.table {
            match value {
                Value::Table(t) => out.push((name.clone(), Section::new(self.key_path(name), t))),
                other => {
                    p.push(&self.key_path(name), format!("expected a table, found {}", other.type_str()))
                }
            }
        }
        out
    }

    pub fn str(&self, key: &str, p: &mut Problems) -> Option<&'a str> {
        match self.table.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                p.push(&self.key_path(key), format!("expected a string, found {}", other.type_str()));
                None
            }
        }
    }

    pub fn required_str(&self, key: &str, p: &mut Problems) -> Option<&'a str> {
        if !self.table.contains_key(key) {
            p.push(&self.key_path(key), "required key is missing");
            return None;
        }
        self.str(key, p)
    }

    pub fn bool(&self, key: &str, p: &mut Problems) -> Option<bool> {
        match self.table.get(key) {
            None => None,
            Some(Value::Boolean(b)) => Some(*b),
            Some(other) => {
                p.push(&self.key_path(key), format!("expected true or false, found {}", other.type_str()));
                None
            }
        }
    }

    /// An array of strings (integers are accepted and stringified, for uid-like lists).
    pub fn str_list(&self, key: &str, p: &mut Problems) -> Vec<&'a str> {
        match self.table.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.as_str()),
                        other => p.push(
                            &format!("{}[{i}]", self.key_path(key)),
                            format!("expected a string, found {}", other.type_str()),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                p.push(
                    &self.key_path(key),
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    /// An integer.
    pub fn integer(&self, key: &str, p: &mut Problems) -> Option<i64> {
        match self.table.get(key) {
            None => None,
            Some(Value::Integer(i)) => Some(*i),
            Some(other) => {
                p.push(&self.key_path(key), format!("expected an integer, found {}", other.type_str()));
                None
            }
        }
    }

    /// A number (integer or float).
    pub fn number(&self, key: &str, p: &mut Problems) -> Option<f64> {
        match self.table.get(key) {
            None => None,
            Some(Value::Integer(i)) => Some(*i as f64),
            Some(Value::Float(f)) if f.is_finite() => Some(*f),
            Some(other) => {
                p.push(&self.key_path(key), format!("expected a number, found {}", other.type_str()));
                None
            }
        }
    }

    /// An array of ids (`1001`, or `"1001"`) and names (`"alice"`): `Ok(id)` or `Err(name)`.
    pub fn id_list(&self, key: &str, p: &mut Problems) -> Vec<Result<u32, String>> {
        let Some(value) = self.table.get(key) else { return Vec::new() };
        let Value::Array(items) = value else {
            p.push(&self.key_path(key), format!("expected an array, found {}", value.type_str()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = || format!("{}[{i}]", self.key_path(key));
            match item {
                Value::Integer(n) => match u32::try_from(*n) {
                    Ok(id) if id != u32::MAX => out.push(Ok(id)),
                    _ => p.push(&at(), format!("{n} is not a valid id")),
                },
                Value::String(s) if s.is_empty() => p.push(&at(), "must not be empty"),
                Value::String(s) => out.push(s.parse::<u32>().map_err(|_| s.clone())),
                other => p.push(&at(), format!("expected a name or a number, found {}", other.type_str())),
            }
        }
        out
    }

    /// A value parsed by `parse`, reporting its error under this key.
    pub fn parsed<T, E: std::fmt::Display>(
        &self,
        key: &str,
        p: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.str(key, p)?;
        match parse(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                p.push(&self.key_path(key), format!("'{raw}': {e}"));
                None
            }
        }
    }

    /// Each element of a string list parsed by `parse`.
    pub fn parsed_list<T, E: std::fmt::Display>(
        &self,
        key: &str,
        p: &mut Problems,
        mut parse: impl FnMut(&str) -> Result<T, E>,
    ) -> Vec<T> {
        let raw = self.str_list(key, p);
        let mut out = Vec::new();
        for (i, s) in raw.into_iter().enumerate() {
            match parse(s) {
                Ok(v) => out.push(v),
                Err(e) => p.push(&format!("{}[{i}]", self.key_path(key)), format!("'{s}': {e}")),
            }
        }
        out
    }

    /// The raw table, for fingerprinting.
    pub fn raw(&self) -> &'a Table {
        self.table
    }

    pub fn contains(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }
}
