//! What `tracing` records while a test runs: the formatted lines, in a
//! buffer the test reads. The subscriber is the thread's default, so a
//! current-thread runtime runs the server's tasks where it sees them.

use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Records WARN and above until the guard drops.
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let buf = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || buf.clone())
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Every line recorded.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The ERROR lines.
    pub fn errors(&self) -> Vec<String> {
        let mut lines = self.lines();
        lines.retain(|l| l.contains("ERROR"));
        lines
    }
}
