//! Shutting an instance down: the signals that ask for it, and [`Running`]'s
//! graceful stop (no new connections, the stream ends, waiters answer, the
//! last notifications leave).

use super::Running;

/// How long the background tasks get to finish (flush notifications) after the server stopped.
const BACKGROUND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

impl Running {
    /// Begin a graceful shutdown: stop accepting, end the stream, answer waiters.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until the server has stopped (after `shutdown`).
    pub async fn wait(self) {
        let _ = self.task.await;
        let background = futures_util::future::join_all(self.background);
        let _ = tokio::time::timeout(BACKGROUND_GRACE, background).await;
    }

    /// Shut down and wait.
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}
