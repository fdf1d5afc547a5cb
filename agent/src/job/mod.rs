//! What commands and steps run: a future that yields a JSON result or a [`CommandError`]
//! (IPA's error objects), and [`blocking`] to do disk and file work off the async threads.
//! Below `commands` and `steps`, which both use it.

mod error;
mod store;

use futures_util::future::BoxFuture;
use serde_json::Value;

pub use error::CommandError;
pub use store::{CommandEntry, CommandStore};

/// What a command handler or a step returns: the `command_result` value or an error.
pub type CommandFuture = BoxFuture<'static, Result<Value, CommandError>>;

/// Run blocking work (file reads, syscalls) off the async threads.
pub async fn blocking<T, F>(what: &str, f: F) -> Result<T, CommandError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CommandError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(join) => Err(CommandError::failed_msg(format!(
            "{what} ended abnormally: {join}"
        ))),
    }
}
