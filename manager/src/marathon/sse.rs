//! A hand-written `text/event-stream` parser for Marathon's Jetty servlet: CRLF framing, a
//! heartbeat that is a bare `\r` flushed before its `\n` (so CR alone must end a line and the
//! LF that may follow in a later chunk must not make a second line), no `id:`, and no
//! dispatch of an event without data.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, `message` when absent.
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    last_was_cr: bool,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.last_was_cr => self.last_was_cr = false,
                b'\r' | b'\n' => {
                    self.last_was_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(ev) = self.line_done(&line) {
                        out.push(ev);
                    }
                }
                _ => {
                    self.last_was_cr = false;
                    self.line.push(b);
                }
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            // Blank line: dispatch, unless nothing was collected (heartbeats).
            let event = self.event.take();
            let data = self.data.take()?;
            return Some(SseEvent {
                event: event.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
            None => (text.into_owned(), String::new()),
        };
        match field.as_str() {
            "event" => self.event = Some(value),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => self.data = Some(value),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_frames_and_bare_cr_heartbeats() {
        let mut p = SseParser::new();
        let mut got = p.push(b"event: event_stream_attached\r\ndata: {\"a\":1}\r\n\r\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, "event_stream_attached");
        // Heartbeat: CR flushed, then LF in the next chunk; never an event.
        assert!(p.push(b"\r").is_empty());
        assert!(p.push(b"\n").is_empty());
        assert!(p.push(b"\r\n\r\n").is_empty());
        // A frame split at every byte.
        let frame = b"event: status_update_event\r\ndata: {\"x\":2}\r\n\r\n";
        for b in frame.iter() {
            got.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            SseEvent {
                event: "status_update_event".into(),
                data: "{\"x\":2}".into()
            }
        );
    }

    #[test]
    fn lf_only_and_lone_cr_lines() {
        let mut p = SseParser::new();
        let got = p.push(b"event: a\ndata: 1\n\nevent: b\rdata: 2\r\r: comment\r\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].data, "2");
    }

    #[test]
    fn docs_capture_parses() {
        let text = "event: event_stream_attached\ndata: {\"remoteAddress\":\"0:0:0:0:0:0:0:1\",\"eventType\":\"event_stream_attached\",\"timestamp\":\"2015-09-30T12:44:30.061Z\"}\n\nevent: status_update_event\ndata: {\"taskId\":\"foo.1\",\"taskStatus\":\"TASK_FAILED\"}\n\n\n";
        let got = SseParser::new().push(text.as_bytes());
        assert_eq!(got.len(), 2);
    }
}
