//! Core values cross into JavaScript through serde, so this binding lists none of their fields:
//! names turn camelCase (the JavaScript spelling of the CLI's `--json` names), `null`s are left
//! out (an absent field reads `undefined`, as `index.d.ts` says), and integers become plain
//! numbers (exact up to 2^53, far beyond any count or size here; napi would make larger ones
//! strings). Options objects cross the other way: their camelCase keys become the snake_case
//! names of the core's serde types, which check them, unknown names included.
//!
//! None of these types holds a map keyed by data (tag names, say), so renaming every key of
//! every object renames exactly their fields.

use std::time::Duration;

use heck::{ToLowerCamelCase, ToSnakeCase};
use regmirror::config::MirrorSettings;
use regmirror::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{Map, Number, Value};

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

/// A mirror's settings from a JavaScript object, checked by the core (an error names the
/// setting, and quotes unknown names as JavaScript spells them).
pub(crate) fn mirror_settings(value: Value) -> regmirror::Result<MirrorSettings> {
    MirrorSettings::from_json(&snake(value).to_string()).map_err(js_names)
}

/// A JavaScript object's fields under the core's snake_case names, for the core to check
/// (`what` names the object in errors).
pub(crate) fn snake_fields(value: Value, what: &str) -> regmirror::Result<Map<String, Value>> {
    match snake(value) {
        Value::Object(fields) => Ok(fields),
        _ => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{what} must be an object"),
        )),
    }
}

/// `e` with the names serde quotes (`` unknown field `tls_verifyy` ``) as JavaScript spells
/// them.
pub(crate) fn js_names(e: Error) -> Error {
    Error::new(e.kind(), camel_names(e.message()))
}

fn snake(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_snake_case(), snake(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake).collect()),
        other => other,
    }
}

/// serde names fields between backticks (``unknown field `tls_verifyy`, expected one of `id`,
/// ...``): say them as the caller wrote them (values quoted the same way stay as they are).
fn camel_names(message: &str) -> String {
    let is_name = |s: &str| {
        s.contains('_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    message
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 && is_name(part) {
                part.to_lower_camel_case()
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// A count given as a JavaScript number, which napi would wrap (-1) or truncate (1.5) on the
/// way to an integer; the core checks its range.
pub(crate) fn whole_number(name: &str, n: f64) -> regmirror::Result<usize> {
    if n.fract() != 0.0 || !(0.0..=f64::from(u32::MAX)).contains(&n) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{name}: {n} is not a whole number of 1 or more"),
        ));
    }
    // Whole and in range: exact.
    Ok(n as usize)
}

/// A duration given in seconds (fractions allowed).
pub(crate) fn seconds(name: &str, secs: f64) -> regmirror::Result<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("{name}: {secs} is not a number of seconds"),
        )
    })
}
