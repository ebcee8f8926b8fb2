//! The manifest, read field by field: [`Fields`] marks every field it
//! hands out as read in a [`Ledger`], which then names the ones nobody read.

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
};

use serde_json::{Map, Value};

/// What the translation read of a manifest: every field present, every
/// field read, and values it does not handle. Several [`Fields`] views of
/// the same object share it.
#[derive(Default)]
pub(crate) struct Ledger {
    seen: RefCell<BTreeSet<String>>,
    read: RefCell<BTreeSet<String>>,
    values: RefCell<Vec<String>>,
}

impl Ledger {
    /// The paths of the fields nobody read, and the values not handled.
    pub(crate) fn unhandled(&self) -> Vec<String> {
        let read = self.read.borrow();
        let mut out: Vec<String> = self
            .seen
            .borrow()
            .iter()
            .filter(|p| !read.contains(*p))
            .cloned()
            .collect();
        out.extend(self.values.borrow().iter().cloned());
        out
    }
}

/// One object of the manifest, read field by field through the [`Ledger`].
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
    sink: &'a Ledger,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(value: &'a Value, path: impl Into<String>, sink: &'a Ledger) -> Self {
        let path = path.into();
        let map = value
            .as_object()
            .unwrap_or_else(|| panic!("{path}: not an object"));
        let fields = Self { path, map, sink };
        for key in map.keys() {
            sink.seen.borrow_mut().insert(fields.path(key));
        }
        fields
    }

    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        let v = self.map.get(key)?;
        self.sink.read.borrow_mut().insert(self.path(key));
        Some(v)
    }

    /// Marks a field handled without translating it; `_why` says why it
    /// needs no translation (it is for the reader of the code).
    pub(crate) fn skip(&self, key: &str, _why: &str) -> Option<&'a Value> {
        self.get(key)
    }

    pub(crate) fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{}: not a string", self.path(key)))
        })
    }

    pub(crate) fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).map(|v| {
            v.as_i64()
                .unwrap_or_else(|| panic!("{}: not an integer", self.path(key)))
        })
    }

    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| {
            v.as_bool()
                .unwrap_or_else(|| panic!("{}: not a boolean", self.path(key)))
        })
    }

    pub(crate) fn obj(&self, key: &str) -> Option<Fields<'a>> {
        self.get(key)
            .map(|v| Fields::new(v, self.path(key), self.sink))
    }

    /// A list of objects (empty when absent).
    pub(crate) fn list(&self, key: &str) -> Vec<Fields<'a>> {
        let path = self.path(key);
        self.get(key)
            .map(|v| {
                v.as_array()
                    .unwrap_or_else(|| panic!("{path}: not a list"))
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Fields::new(item, format!("{path}[{i}]"), self.sink))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A list of strings (empty when absent).
    pub(crate) fn strings(&self, key: &str) -> Vec<String> {
        let path = self.path(key);
        self.get(key)
            .map(|v| {
                v.as_array()
                    .unwrap_or_else(|| panic!("{path}: not a list"))
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .unwrap_or_else(|| panic!("{path}: not strings"))
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A map of strings (empty when absent).
    pub(crate) fn string_map(&self, key: &str) -> HashMap<String, String> {
        let path = self.path(key);
        self.get(key)
            .map(|v| {
                v.as_object()
                    .unwrap_or_else(|| panic!("{path}: not a map"))
                    .iter()
                    .map(|(k, v)| {
                        let v = v
                            .as_str()
                            .unwrap_or_else(|| panic!("{path}.{k}: not a string"));
                        (k.clone(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a value the translation does not handle.
    pub(crate) fn unhandled(&self, key: &str, value: impl std::fmt::Display) {
        self.sink
            .values
            .borrow_mut()
            .push(format!("{} = {value}", self.path(key)));
    }
}
