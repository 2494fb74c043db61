//! Ids across the JS boundary. Proxima ids are u64; JavaScript numbers hold integers exactly
//! only up to 2^53 − 1. Ids come in as numbers (safe integers only), BigInts, arrays of either
//! or a `BigUint64Array`, and go out as numbers when safe, BigInts otherwise — never rounded.

use js_sys::{Array, BigInt, BigUint64Array};
use wasm_bindgen::{JsCast, JsValue};

use proxima_core::{Error, VectorId};

/// 2^53 − 1, JavaScript's `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn bad(value: &JsValue, reason: &str) -> Error {
    // Anything but a number or a string is shown by its type: a JsValue's Debug text costs
    // the module's JS glue a 70-line debugString.
    let shown = value
        .as_f64()
        .map(number_text)
        .or_else(|| value.as_string())
        .unwrap_or_else(|| {
            if value.is_null() {
                "null".into()
            } else if value.is_undefined() {
                "undefined".into()
            } else {
                format!(
                    "(of type {})",
                    value.js_typeof().as_string().unwrap_or_default()
                )
            }
        });
    Error::invalid("id", shown, reason)
}

/// A JS number as JavaScript writes it (`2.5`, `-1`, `NaN`, `1e+21`): the module carries
/// no float formatting of its own.
pub fn number_text(f: f64) -> String {
    js_sys::Number::from(f)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// One id: a safe non-negative integer number or a BigInt in `0..2^64`.
pub fn id_from_js(value: &JsValue) -> Result<VectorId, Error> {
    if let Some(f) = value.as_f64() {
        if f.fract() != 0.0 || !(0.0..=MAX_SAFE_INTEGER as f64).contains(&f) {
            return Err(bad(
                value,
                "ids given as numbers must be integers between 0 and 2^53 - 1 (pass a BigInt for larger ids)",
            ));
        }
        return Ok(f as u64);
    }
    if value.is_bigint() {
        let big: BigInt = value.clone().unchecked_into();
        return u64::try_from(big).map_err(|_| bad(value, "ids must be between 0 and 2^64 - 1"));
    }
    Err(bad(value, "an id must be a number or a BigInt"))
}

/// A list of ids: an array of numbers/BigInts or a `BigUint64Array`.
pub fn ids_from_js(value: &JsValue) -> Result<Vec<VectorId>, Error> {
    if let Some(typed) = value.dyn_ref::<BigUint64Array>() {
        return Ok(typed.to_vec());
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        return array.iter().map(|v| id_from_js(&v)).collect();
    }
    if value.as_f64().is_some() || value.is_bigint() {
        return Ok(vec![id_from_js(value)?]);
    }
    Err(Error::invalid(
        "ids",
        "(not a list)",
        "expected an array of numbers or BigInts, or a BigUint64Array",
    ))
}

/// An id for JavaScript: a number when it is a safe integer, else a BigInt.
pub fn id_to_js(id: VectorId) -> JsValue {
    if id <= MAX_SAFE_INTEGER {
        JsValue::from_f64(id as f64)
    } else {
        JsValue::from(BigInt::from(id))
    }
}

/// Ids as a JS array (numbers or BigInts).
pub fn ids_to_js(ids: &[VectorId]) -> Array {
    ids.iter().map(|&id| id_to_js(id)).collect()
}
