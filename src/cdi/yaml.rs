//! A small YAML emitter for JSON values, enough for CDI specs.
//!
//! Block style throughout; every string is double-quoted with JSON escapes,
//! which are valid YAML double-quoted escapes, so no value can turn into a
//! different type (`no`, `0:1`, `1e3`) the way plain scalars can. Keys are
//! left plain only when they are simple identifiers.

use serde_json::Value;
use std::fmt::Write as _;

/// The YAML document for `value`, ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

/// Plain and quoted scalars, and the flow forms of empty collections.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // serde_json's string form is a JSON string literal: a valid YAML double-quoted scalar.
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    // `y`, `n`, `on`... are booleans to YAML 1.1 readers even as keys.
    let ambiguous =
        matches!(k.to_ascii_lowercase().as_str(), "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null");
    if plain && !ambiguous { k.to_string() } else { Value::String(k.to_string()).to_string() }
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in map {
        let _ = write!(out, "{:indent$}{}:", "", key(k));
        entry_value(out, v, indent);
    }
}

/// After `key:` or `- key:`: the value inline, or on the next lines, indented.
fn entry_value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if is_block(v) => {
            out.push('\n');
            mapping(out, m, indent + 2);
        }
        // A sequence under a key sits at the key's indent, as kubectl and yq write it.
        Value::Array(a) if is_block(v) => {
            out.push('\n');
            sequence(out, a, indent);
        }
        _ => {
            let _ = writeln!(out, " {}", scalar(v));
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            Value::Object(m) if is_block(item) => {
                // First key on the dash line, the rest aligned under it.
                let mut first = true;
                for (k, v) in m {
                    if first {
                        let _ = write!(out, "{:indent$}- {}:", "", key(k));
                        first = false;
                    } else {
                        let _ = write!(out, "{:w$}{}:", "", key(k), w = indent + 2);
                    }
                    entry_value(out, v, indent + 2);
                }
            }
            Value::Array(a) if is_block(item) => {
                let _ = writeln!(out, "{:indent$}-", "");
                sequence(out, a, indent + 2);
            }
            _ => {
                let _ = writeln!(out, "{:indent$}- {}", "", scalar(item));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_are_typed_and_strings_always_quoted() {
        let y = to_yaml(&json!({"a": 1, "b": "0:1", "c": true, "d": "no", "e": null}));
        assert_eq!(y, "a: 1\nb: \"0:1\"\nc: true\nd: \"no\"\ne: null\n");
    }

    #[test]
    fn nested_mappings_indent_by_two() {
        assert_eq!(to_yaml(&json!({"a": {"b": {"c": 1}}})), "a:\n  b:\n    c: 1\n");
    }

    #[test]
    fn sequence_of_mappings_puts_first_key_on_the_dash() {
        let y = to_yaml(&json!({"devices": [{"name": "0", "edits": {"env": ["A=1", "B=2"]}}, {"name": "all"}]}));
        assert_eq!(y, "devices:\n- name: \"0\"\n  edits:\n    env:\n    - \"A=1\"\n    - \"B=2\"\n- name: \"all\"\n");
    }

    #[test]
    fn empty_collections_use_flow_form() {
        assert_eq!(to_yaml(&json!({"a": [], "b": {}})), "a: []\nb: {}\n");
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(to_yaml(&json!({"k": "a\"b\\c\nd#e: f"})), "k: \"a\\\"b\\\\c\\nd#e: f\"\n");
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(to_yaml(&json!({"on": 1, "a-b": 2, "x_1": 3})), "\"on\": 1\n\"a-b\": 2\nx_1: 3\n");
    }

    #[test]
    fn nested_sequences() {
        assert_eq!(to_yaml(&json!({"a": [[1, 2], [3]]})), "a:\n-\n  - 1\n  - 2\n-\n  - 3\n");
    }
}
