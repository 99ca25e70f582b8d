//! A small Server-Sent-Events parser fed with raw bytes: the one SSE reader
//! of the project (the agent, the tests and the bench use it).
//!
//! Written here rather than taken from `eventsource-stream`, which drops a
//! block without `data` (the broker's opening `retry:` block is exactly that)
//! and so would hide the reconnection delay the broker asks for.

use std::time::Duration;

/// A line longer than this ends the stream as malformed (a job is at most the
/// broker's body limit, 1 MiB by default, plus its envelope).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// What the parser hands out, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A `retry:` field: the reconnection delay the server asks for.
    Retry(Duration),
    /// A comment line (`: keepalive`), without the colon and one leading space.
    Comment(String),
    /// A dispatched event (a block with data).
    Event(Event),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, `message` when absent.
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
#[error("a line of the event stream is longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Incremental parser: `push` bytes as they come, then take items with `next`.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a leading `\n` belongs to it.
    after_cr: bool,
    started: bool,
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    ready: std::collections::VecDeque<Item>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feed bytes; complete lines are parsed at once.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.end_line(),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line();
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let mut line = String::from_utf8_lossy(&line);
        if !self.started {
            // A byte order mark may open the stream; it is not part of a line.
            self.started = true;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned().into();
            }
        }
        if line.is_empty() {
            self.dispatch();
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "" => self.ready.push_back(Item::Comment(value.to_owned())),
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.ready.push_back(Item::Retry(Duration::from_millis(ms)));
                }
            }
            _ => {}
        }
    }

    /// A blank line: hand out the block if it carried data, else forget it.
    fn dispatch(&mut self) {
        let event = self.event.take();
        let id = self.id.take();
        if let Some(data) = self.data.take() {
            self.ready.push_back(Item::Event(Event {
                event: event.unwrap_or_else(|| "message".into()),
                id,
                data,
            }));
        }
    }

    /// The next complete item, if any.
    pub fn next_item(&mut self) -> Option<Item> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<Item> {
        let mut parser = Parser::new();
        let mut items = Vec::new();
        for chunk in chunks {
            parser.push(chunk).unwrap();
            while let Some(item) = parser.next_item() {
                items.push(item);
            }
        }
        items
    }

    fn event(event: &str, id: Option<&str>, data: &str) -> Item {
        Item::Event(Event {
            event: event.into(),
            id: id.map(Into::into),
            data: data.into(),
        })
    }

    #[test]
    fn retry_alone_then_a_job_then_a_keepalive() {
        let items = parse(&[b"retry:2000\n\nevent:job\nid:7\ndata:{\"id\":7}\n\n: keepalive\n\n"]);
        assert_eq!(
            items,
            vec![
                Item::Retry(Duration::from_millis(2000)),
                event("job", Some("7"), "{\"id\":7}"),
                Item::Comment("keepalive".into()),
            ]
        );
    }

    #[test]
    fn split_anywhere_and_any_line_ending() {
        let text = b"\xEF\xBB\xBFevent: job\r\ndata: a\rdata: b\r\n\r\ndata:x\n\n";
        let whole = parse(&[text]);
        assert_eq!(
            whole,
            vec![event("job", None, "a\nb"), event("message", None, "x")]
        );
        for cut in 1..text.len() {
            assert_eq!(parse(&[&text[..cut], &text[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn empty_data_line_still_dispatches_and_blocks_without_data_do_not() {
        assert_eq!(
            parse(&[b"data\n\nevent: job\nid: 3\n\ndata\ndata: b\n\n"]),
            vec![event("message", None, ""), event("message", None, "\nb")]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::new();
        let chunk = vec![b'a'; 1024 * 1024];
        let mut result = Ok(());
        for _ in 0..(MAX_LINE / chunk.len() + 1) {
            result = parser.push(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
