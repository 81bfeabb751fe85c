//! A server-sent events parser for bytes arriving in arbitrary pieces.
//!
//! Follows the WHATWG event-stream rules: lines end in `\n`, `\r\n` or `\r` (also when the
//! `\r` and the `\n` arrive in different pieces); `:` starts a comment; `data:` lines of one
//! event are joined with `\n`; one space after the colon is dropped; an empty line dispatches
//! the event. Bytes are buffered until a line is complete, so a piece may end anywhere, also
//! inside a UTF-8 sequence. A line or event larger than the limit is an error, not a memory
//! blow-up.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
}

/// Why the stream could not be parsed. Carries no content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event exceeded the limit.
    #[error("an event is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// A line is not UTF-8.
    #[error("an event line is not valid UTF-8")]
    NotUtf8,
}

/// The parser's state between pieces.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous piece ended in `\r`: a leading `\n` belongs to that line end.
    after_cr: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    max: usize,
}

impl SseParser {
    /// A parser refusing events over `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            data: String::new(),
            has_data: false,
            event: None,
            max: max_event_bytes,
        }
    }

    /// Feeds a piece; appends the events it completes to `out`.
    pub fn push(&mut self, mut piece: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.after_cr {
            self.after_cr = false;
            if let Some((&b'\n', rest)) = piece.split_first() {
                piece = rest;
            }
        }
        while !piece.is_empty() {
            match piece.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.line.extend_from_slice(piece);
                    if self.line.len() > self.max {
                        return Err(SseError::TooLarge { max: self.max });
                    }
                    return Ok(());
                }
                Some(i) => {
                    self.line.extend_from_slice(&piece[..i]);
                    let cr = piece[i] == b'\r';
                    piece = &piece[i + 1..];
                    if cr {
                        match piece.first() {
                            Some(b'\n') => piece = &piece[1..],
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line, out)?;
                }
            }
        }
        Ok(())
    }

    /// The stream ended: an event without its closing empty line is dropped (as the standard
    /// says). Returns whether anything was left unfinished.
    pub fn finish(&mut self) -> bool {
        let unfinished = !self.line.is_empty() || self.has_data;
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        self.event = None;
        unfinished
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.has_data = false;
            self.event = None;
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(SseError::TooLarge { max: self.max });
                }
            }
            "event" => self.event = Some(value.to_string()),
            // `id` and `retry` steer reconnection, which a relay does not do.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for piece in pieces {
            p.push(piece, &mut out).unwrap();
        }
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn fields_comments_line_ends_and_multi_line_data() {
        let stream = b": keep-alive\r\n\r\ndata: {\"a\":\r\ndata:1}\r\n\r\nevent: x\nid: 7\nretry: 10\ndata:  two spaces\n\ndata\n\ndata: last\r\rdata: no end";
        let events = parse(&[stream]);
        assert_eq!(data(&events), ["{\"a\":\n1}", " two spaces", "", "last"]);
        assert_eq!(events[1].event.as_deref(), Some("x"));
        // The same stream split at every byte, including between \r and \n and inside UTF-8.
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for b in stream.iter() {
            p.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, events);
        assert!(p.finish());
        let utf8 = "data: Zoë ☃ 😀\n\n".as_bytes();
        for cut in 0..utf8.len() {
            assert_eq!(data(&parse(&[&utf8[..cut], &utf8[cut..]])), ["Zoë ☃ 😀"]);
        }
    }

    #[test]
    fn limits_and_bad_bytes() {
        let mut p = SseParser::new(16);
        let mut out = Vec::new();
        assert_eq!(
            p.push(&[b'x'; 17], &mut out),
            Err(SseError::TooLarge { max: 16 })
        );
        let mut p = SseParser::new(16);
        assert_eq!(
            p.push(b"data: 0123456789\ndata: 0123456789\n", &mut out),
            Err(SseError::TooLarge { max: 16 })
        );
        let mut p = SseParser::new(16);
        assert_eq!(p.push(b"data: \xff\n\n", &mut out), Err(SseError::NotUtf8));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            datas in proptest::collection::vec("[^\r\n]{0,12}", 1..6),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut stream = String::new();
            for d in &datas {
                stream.push_str(&format!(": c{nl}data: {d}{nl}{nl}"));
            }
            let bytes = stream.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut prev = 0;
            for c in cuts { pieces.push(&bytes[prev..c]); prev = c; }
            pieces.push(&bytes[prev..]);
            let got = parse(&pieces);
            // One space after the colon is dropped; `data: {d}` leaves `d` as it was.
            prop_assert_eq!(got.len(), datas.len());
            for (g, d) in got.iter().zip(&datas) {
                prop_assert_eq!(&g.data, d);
            }
        }
    }
}
