//! Minimal RFC 6902 JSON Patch between two JSON documents.
//!
//! Unlike a naive diff, arrays are aligned with a longest-common-subsequence match (elements
//! with a string `name` are matched by name), so inserting `istio-init` in front of the user's
//! init containers is one `add` at index 0, not a `replace` of every element. Objects are
//! diffed key by key, so fields we do not own are never touched — that is what keeps unknown
//! fields such as another init container's `restartPolicy` intact.

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

/// Computes a patch that turns `from` into `to` when applied with `json_patch::patch`.
pub fn diff(from: &Value, to: &Value) -> Patch {
    let mut ops = Vec::new();
    diff_at(&mut String::new(), from, to, &mut ops);
    Patch(ops)
}

fn pointer(path: &str) -> json_patch::jsonptr::PointerBuf {
    // Invariant: `path` is built only from `push_token`, which escapes `~` and `/`, so it is
    // always a valid RFC 6901 pointer.
    json_patch::jsonptr::PointerBuf::parse(path).expect("escaped pointer is valid")
}

fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

fn diff_at(path: &mut String, from: &Value, to: &Value, ops: &mut Vec<PatchOperation>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, old) in a {
                let len = path.len();
                push_token(path, key);
                match b.get(key) {
                    Some(new) => diff_at(path, old, new, ops),
                    None => ops.push(PatchOperation::Remove(RemoveOperation {
                        path: pointer(path),
                    })),
                }
                path.truncate(len);
            }
            for (key, new) in b {
                if !a.contains_key(key) {
                    let len = path.len();
                    push_token(path, key);
                    ops.push(PatchOperation::Add(AddOperation {
                        path: pointer(path),
                        value: new.clone(),
                    }));
                    path.truncate(len);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => diff_array(path, a, b, ops),
        _ if from == to => {}
        _ => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer(path),
            value: to.clone(),
        })),
    }
}

/// The identity used to align array elements: the `name` of named objects, else the value.
fn same_identity(a: &Value, b: &Value) -> bool {
    match (name_of(a), name_of(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

fn name_of(v: &Value) -> Option<&str> {
    v.as_object()?.get("name")?.as_str()
}

enum Step {
    Keep(usize, usize),
    Delete,
    Insert(usize),
}

fn diff_array(path: &mut String, a: &[Value], b: &[Value], ops: &mut Vec<PatchOperation>) {
    // LCS table; arrays in pods are short (containers, volumes, env), so O(n·m) is fine.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same_identity(&a[i], &b[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut steps = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && same_identity(&a[i], &b[j]) {
            steps.push(Step::Keep(i, j));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            steps.push(Step::Insert(j));
            j += 1;
        } else {
            steps.push(Step::Delete);
            i += 1;
        }
    }
    // Replay the steps against the array as it evolves: `pos` is the index in the patched
    // array, `len` its current length.
    let (mut pos, mut len) = (0usize, n);
    for step in steps {
        let base = path.len();
        match step {
            Step::Keep(i, j) => {
                push_token(path, &pos.to_string());
                diff_at(path, &a[i], &b[j], ops);
                pos += 1;
            }
            Step::Delete => {
                push_token(path, &pos.to_string());
                ops.push(PatchOperation::Remove(RemoveOperation {
                    path: pointer(path),
                }));
                len -= 1;
            }
            Step::Insert(j) => {
                if pos == len {
                    push_token(path, "-");
                } else {
                    push_token(path, &pos.to_string());
                }
                ops.push(PatchOperation::Add(AddOperation {
                    path: pointer(path),
                    value: b[j].clone(),
                }));
                pos += 1;
                len += 1;
            }
        }
        path.truncate(base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn check(from: Value, to: Value) -> Patch {
        let p = diff(&from, &to);
        let mut doc = from.clone();
        json_patch::patch(&mut doc, &p).expect("patch applies");
        assert_eq!(doc, to, "patch {p:?}");
        p
    }

    #[test]
    fn insert_at_front_is_one_add() {
        let p = check(
            json!({"c": [{"name": "a"}, {"name": "b"}]}),
            json!({"c": [{"name": "x"}, {"name": "a"}, {"name": "b"}]}),
        );
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(text, r#"[{"op":"add","path":"/c/0","value":{"name":"x"}}]"#);
    }

    #[test]
    fn keys_are_escaped() {
        let p = check(json!({"m": {}}), json!({"m": {"a/b~c": "1"}}));
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("/m/a~1b~0c"), "{text}");
    }

    #[test]
    fn missing_parent_is_added_whole() {
        let p = check(json!({"spec": {}}), json!({"spec": {"v": [1, 2]}}));
        assert_eq!(p.0.len(), 1);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..5).prop_map(|n| json!(n)),
            "[a-c/~]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-c/~]{1,2}", inner.clone(), 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ("[a-c]", inner).prop_map(|(n, v)| json!({"name": n, "v": v})),
            ]
        })
    }

    proptest! {
        #[test]
        fn diff_then_apply_gives_target(a in arb_json(), b in arb_json()) {
            let p = diff(&a, &b);
            let mut doc = a.clone();
            json_patch::patch(&mut doc, &p).expect("patch applies");
            prop_assert_eq!(doc, b);
        }

        #[test]
        fn diff_of_equal_documents_is_empty(a in arb_json()) {
            prop_assert!(diff(&a, &a).0.is_empty());
        }
    }
}
