//! Core errors as JavaScript `Error`s: the message starts with the stable code, and the code
//! is also the error's `code` property, so callers branch on `err.code` as they would on the
//! server's JSON `code`.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

use proxima_core::Error;

/// A JS `Error` with `code` set to the error's stable code.
pub fn js_error(e: Error) -> JsValue {
    coded(e.code(), &e.to_string())
}

/// A JS `Error` with the given code and message.
pub fn coded(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(&format!("{code}: {message}"));
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &JsValue::from_str("code"), &JsValue::from_str(code));
    err.into()
}
