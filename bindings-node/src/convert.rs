//! Core values cross into JavaScript through serde, so this binding lists none of their fields:
//! names turn camelCase (the JavaScript spelling of the CLI's `--json` names), `null`s are left
//! out (an absent field reads `undefined`, as `index.d.ts` says), and integers become plain
//! numbers (exact up to 2^53, far beyond any count or size here; napi would make larger ones
//! strings).
//!
//! None of these types holds a map keyed by data (tag names, say), so renaming every key of
//! every object renames exactly their fields.

use heck::ToLowerCamelCase;
use regmirror::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{Number, Value};

/// `value` as the JavaScript object its `index.d.ts` type describes.
pub(crate) fn to_js<T: Serialize>(value: &T) -> regmirror::Result<Value> {
    let value = serde_json::to_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot hand a result to JavaScript: {e}"),
        )
    })?;
    Ok(camel(value))
}

fn camel(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_lower_camel_case(), camel(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel).collect()),
        Value::Number(n) => Value::Number(n.as_f64().and_then(Number::from_f64).unwrap_or(n)),
        other => other,
    }
}
