//! Containing panics of third-party code on bad input.
//!
//! Some dependencies panic where they should return an error (the `tokenizers` crate on some
//! malformed `tokenizer.json` files, found by fuzzing; GPU backends when no adapter or driver is
//! present). [`catch_panic_silently`] turns such a panic into an error message without printing
//! it, so the user sees one clear error line and no backtrace.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Whether this thread is inside [`catch_panic_silently`].
    static SILENT: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the process's panic hook (once) so that it stays quiet for threads inside
/// [`catch_panic_silently`] and prints as before for every other thread.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !SILENT.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err(panic message)` and is not printed.
///
/// Only the calling thread is silenced: a panic on another thread meanwhile (a GPU backend's
/// device thread, say) is printed as usual, since it may be the only trace of why the work
/// here stopped. Calls nest (the inner one restores the outer one's state) and run in parallel
/// on different threads without waiting for each other.
pub fn catch_panic_silently<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = SILENT.with(|s| s.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    SILENT.with(|s| s.set(was));
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

    #[test]
    fn calls_nest_and_do_not_wait_for_each_other() {
        // Session 25: `xtask bench gpu` wrapped a backend dispatch, whose device probe is itself
        // guarded, and the old process-wide lock made the inner call wait for the outer one
        // forever. Run on a helper thread so a regression fails instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = catch_panic_silently(|| {
                let inner = catch_panic_silently(|| -> u8 { panic!("inner") });
                // Still silenced after the inner call returned: this panic is caught too.
                let again = catch_panic_silently(|| -> u8 { panic!("again") });
                (inner, again)
            });
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("nested calls did not return");
        assert_eq!(r, Ok((Err("inner".to_string()), Err("again".to_string()))));
    }

    #[test]
    fn other_threads_are_not_silenced() {
        catch_panic_silently(|| {
            assert!(SILENT.with(Cell::get));
            let other = std::thread::spawn(|| SILENT.with(Cell::get))
                .join()
                .unwrap();
            assert!(
                !other,
                "a thread spawned inside the call must not be silenced"
            );
        })
        .unwrap();
        assert!(
            !SILENT.with(Cell::get),
            "the flag is restored after the call"
        );
    }
}
