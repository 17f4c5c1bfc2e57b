//! Building RFC 6902 JSON Patches that touch only what they add.
//!
//! Every change `inject` makes is an `add` at the narrowest path that exists, so a
//! pod's other fields, known or not, are never rewritten. `adopt` adds `move` (a
//! container object carried verbatim) and, only when asked, `remove`.

use std::fmt;

use json_patch::{AddOperation, MoveOperation, PatchOperation, RemoveOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

/// A location in a document, as unescaped tokens (`["spec", "containers", "0"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path with more tokens after it.
    pub fn join<I, T>(&self, tokens: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: ToString,
    {
        let mut out = self.0.clone();
        out.extend(tokens.into_iter().map(|t| t.to_string()));
        Self(out)
    }

    /// The unescaped tokens.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    /// The RFC 6901 pointer.
    pub fn pointer(&self) -> PointerBuf {
        PointerBuf::from_tokens(self.0.iter())
    }

    /// The value at this path in `doc`, if any.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(doc, |v, t| match v {
            Value::Object(m) => m.get(t),
            Value::Array(a) => a.get(t.parse::<usize>().ok()?),
            _ => None,
        })
    }
}

impl fmt::Display for Path {
    /// Writes the path as users read fields: `spec.template.spec.containers[0].name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                write!(f, "[{t}]")?;
            } else if t.contains(['.', '/', '[']) {
                write!(f, "[{t:?}]")?;
            } else {
                if !first {
                    f.write_str(".")?;
                }
                f.write_str(t)?;
            }
            first = false;
        }
        Ok(())
    }
}

/// Collects `add` operations.
#[derive(Debug, Default)]
pub struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    /// Adds `value` at `path` (inserting into arrays, setting object members).
    pub fn add(&mut self, path: &Path, value: Value) {
        self.ops.push(PatchOperation::Add(AddOperation {
            path: path.pointer(),
            value,
        }));
    }

    /// Appends `items` to the array at `path` at index `at`, creating the array
    /// when `current` (what is there now) is absent or null.
    pub fn insert_all(
        &mut self,
        path: &Path,
        current: Option<&Value>,
        at: usize,
        items: Vec<Value>,
    ) {
        if items.is_empty() {
            return;
        }
        match current {
            Some(Value::Array(_)) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.add(&path.join([at + i]), item);
                }
            }
            _ => self.add(path, Value::Array(items)),
        }
    }

    /// Sets `key` in the object at `path` to `value`, creating the object when
    /// `current` is absent or null.
    pub fn set_member(&mut self, path: &Path, current: Option<&Value>, key: &str, value: Value) {
        match current {
            Some(Value::Object(_)) => self.add(&path.join([key]), value),
            _ => {
                let mut m = serde_json::Map::new();
                m.insert(key.to_string(), value);
                self.add(path, Value::Object(m));
            }
        }
    }

    /// Moves the value at `from` to `to` verbatim (RFC 6902 `move`): nothing of it is
    /// re-encoded, so fields tandem doesn't know survive. Used by `adopt`.
    pub fn move_to(&mut self, from: &Path, to: &Path) {
        self.ops.push(PatchOperation::Move(MoveOperation {
            from: from.pointer(),
            path: to.pointer(),
        }));
    }

    /// Removes the value at `path` (RFC 6902 `remove`). Used by `adopt` only for the
    /// workarounds it was asked to strip, each one named in its output.
    pub fn remove(&mut self, path: &Path) {
        self.ops.push(PatchOperation::Remove(RemoveOperation {
            path: path.pointer(),
        }));
    }

    /// The operations so far.
    pub fn finish(self) -> Vec<PatchOperation> {
        self.ops
    }
}

/// Applies a patch to a copy-free document; the engine only builds patches that apply.
pub fn apply(doc: &mut Value, ops: &[PatchOperation]) -> Result<(), json_patch::PatchError> {
    json_patch::patch(doc, ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_escape_annotation_keys() {
        let p = Path::root().join(["metadata", "annotations", "tandem.dev/status"]);
        assert_eq!(
            p.pointer().as_str(),
            "/metadata/annotations/tandem.dev~1status"
        );
        assert_eq!(p.to_string(), "metadata.annotations[\"tandem.dev/status\"]");
        let p = Path::root()
            .join(["spec", "containers"])
            .join([0])
            .join(["name"]);
        assert_eq!(p.to_string(), "spec.containers[0].name");
    }

    #[test]
    fn builder_creates_or_inserts() {
        let mut doc = json!({"a": {"list": [1, 2]}, "b": null});
        let mut pb = PatchBuilder::default();
        let list = Path::root().join(["a", "list"]);
        pb.insert_all(&list, list.get(&doc), 0, vec![json!(0)]);
        let b = Path::root().join(["b"]);
        pb.insert_all(&b, b.get(&doc), 0, vec![json!("x")]);
        let a = Path::root().join(["a"]);
        pb.set_member(&a, a.get(&doc), "k/1", json!(true));
        let c = Path::root().join(["c"]);
        pb.set_member(&c, c.get(&doc), "new", json!(1));
        apply(&mut doc, &pb.finish()).unwrap();
        assert_eq!(
            doc,
            json!({"a": {"list": [0, 1, 2], "k/1": true}, "b": ["x"], "c": {"new": 1}})
        );
    }
}
