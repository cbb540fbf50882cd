//! Containing panics of third-party code on bad input.
//!
//! Some dependencies panic where they should return an error (the `tokenizers` crate on some
//! malformed `tokenizer.json` files, found by fuzzing; GPU backends when no adapter or driver is
//! present). [`catch_panic_silently`] turns such a panic into an error message without printing
//! it, so the user sees one clear error line and no backtrace.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// Runs `f`; a panic inside it becomes `Err(panic message)` and is not printed. The panic hook is
/// process-wide, so calls are serialised (each restores the hook it found); a panic on another
/// thread during the call is not printed either.
pub fn catch_panic_silently<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Mutex<()> = Mutex::new(());
    let _serialised = HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked without a message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_and_values_pass_through() {
        assert_eq!(catch_panic_silently(|| 7), Ok(7));
        assert_eq!(
            catch_panic_silently(|| -> u8 { panic!("bad {}", "input") }),
            Err("bad input".to_string())
        );
        assert_eq!(
            catch_panic_silently(|| -> u8 { panic!("static") }),
            Err("static".to_string())
        );
    }
}
