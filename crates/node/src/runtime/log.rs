//! CRI-format container logs: one `<RFC3339Nano UTC> <stream> <F|P> <text>` line per line of
//! output, both streams interleaved into one file in arrival order.
//!
//! The framing is a pure function over bytes ([`LineSplitter`]) so that line splitting is
//! tested without processes; [`pump_logs`] is the I/O that feeds it from the container's pipes.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::Offset;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

/// Lines longer than this are split into `P` (partial) records, as containerd does
/// (its reader buffer is 16 KiB).
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// Which output stream a log record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl LogStream {
    /// The stream's name as it appears in a CRI log line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One framed record: its text (without the newline) and whether it is a complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The bytes of the line, never containing `\n`.
    pub text: Vec<u8>,
    /// `true` for `F` (full line), `false` for `P` (partial).
    pub full: bool,
}

/// Splits a byte stream into CRI records: complete lines as `F`, 16 KiB pieces of longer
/// lines and an unterminated tail at end of stream as `P`.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds a chunk of output and returns the records it completes.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<LogRecord> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let room = MAX_LOG_LINE - self.pending.len();
            let window = &chunk[..chunk.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.pending.extend_from_slice(&window[..nl]);
                    out.push(LogRecord {
                        text: std::mem::take(&mut self.pending),
                        full: true,
                    });
                    chunk = &chunk[nl + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    chunk = &chunk[window.len()..];
                    if self.pending.len() == MAX_LOG_LINE {
                        out.push(LogRecord {
                            text: std::mem::take(&mut self.pending),
                            full: false,
                        });
                    }
                }
            }
        }
        out
    }

    /// Ends the stream: an unterminated tail becomes a partial record.
    pub fn finish(&mut self) -> Option<LogRecord> {
        if self.pending.is_empty() {
            None
        } else {
            Some(LogRecord {
                text: std::mem::take(&mut self.pending),
                full: false,
            })
        }
    }
}

/// Formats `t` as RFC 3339 in UTC with exactly nine fractional digits, the layout containerd
/// writes (`2006-01-02T15:04:05.000000000Z07:00`); times before 1970 are clamped to the epoch.
pub fn format_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = i64::try_from(d.as_secs())
        .ok()
        .and_then(|s| Timestamp::new(s, d.subsec_nanos() as i32).ok())
        .unwrap_or(Timestamp::MAX);
    let dt = Offset::UTC.to_datetime(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond()
    )
}

/// Appends one formatted CRI line for `record` to `buf`.
pub fn format_record(buf: &mut Vec<u8>, at: SystemTime, stream: LogStream, record: &LogRecord) {
    buf.extend_from_slice(format_timestamp(at).as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.extend_from_slice(if record.full { b" F " } else { b" P " });
    buf.extend_from_slice(&record.text);
    buf.push(b'\n');
}

/// The shared log file both stream readers write to. Each batch of records is written with
/// one `write_all` under the lock and the timestamp is taken under the same lock, so the
/// file is in arrival order with non-decreasing timestamps and visible to a tailing reader
/// at once (no user-space buffering).
#[derive(Debug)]
pub(crate) struct LogSink {
    file: Mutex<File>,
}

impl LogSink {
    /// Creates (or appends to) the log file, creating its directory.
    pub(crate) fn open(path: &Path) -> std::io::Result<Arc<LogSink>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(LogSink {
            file: Mutex::new(file),
        }))
    }

    fn write(&self, stream: LogStream, records: &[LogRecord]) {
        if records.is_empty() {
            return;
        }
        // A poisoned lock only means another writer panicked mid-write; the file is still usable.
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.text.len() + 48).sum());
        for r in records {
            format_record(&mut buf, now, stream, r);
        }
        if let Err(e) = file.write_all(&buf) {
            tracing::warn!(error = %e, "writing container log failed");
        }
    }
}

/// Reads one pipe to end of file, writing CRI records to `sink`.
pub(crate) async fn pump_logs(mut rx: pipe::Receiver, stream: LogStream, sink: Arc<LogSink>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => sink.write(stream, &splitter.push(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, stream = stream.as_str(), "reading container output failed");
                break;
            }
        }
    }
    if let Some(tail) = splitter.finish() {
        sink.write(stream, &[tail]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_has_nine_fraction_digits_in_utc() {
        let t = UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202);
        assert_eq!(format_timestamp(t), "2016-10-06T00:17:09.669794202Z");
        assert_eq!(
            format_timestamp(UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_timestamp(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn splitter_frames_full_partial_and_tail() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), vec![]);
        let r = s.push(b"c\nde\n\nf");
        let texts: Vec<_> = r.iter().map(|r| (r.text.as_slice(), r.full)).collect();
        assert_eq!(
            texts,
            vec![(&b"abc"[..], true), (&b"de"[..], true), (&b""[..], true)]
        );
        assert_eq!(
            s.finish(),
            Some(LogRecord {
                text: b"f".to_vec(),
                full: false
            })
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn splitter_cuts_long_lines_at_16k() {
        let mut s = LineSplitter::default();
        let mut line = vec![b'x'; MAX_LOG_LINE * 2 + 5];
        line.push(b'\n');
        let r = s.push(&line);
        assert_eq!(r.len(), 3);
        assert!(!r[0].full && !r[1].full && r[2].full);
        assert_eq!(r[0].text.len(), MAX_LOG_LINE);
        assert_eq!(r[2].text.len(), 5);
        // A newline right after exactly 16 KiB yields an empty full record, as containerd does.
        let mut exact = vec![b'y'; MAX_LOG_LINE];
        exact.push(b'\n');
        let r = s.push(&exact);
        assert_eq!(r.len(), 2);
        assert!(!r[0].full && r[1].full && r[1].text.is_empty());
    }

    #[test]
    fn record_format_matches_cri() {
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202);
        format_record(
            &mut buf,
            t,
            LogStream::Stderr,
            &LogRecord {
                text: b"hi".to_vec(),
                full: false,
            },
        );
        assert_eq!(buf, b"2016-10-06T00:17:09.669794202Z stderr P hi\n");
    }
}
