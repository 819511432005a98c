//! Turns the bytes of generated tokens into text a client may see: whole
//! UTF-8 characters only, and never a piece of a stop sequence (held back
//! until it is clear whether the stop sequence completes).

/// What one more token produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Text that is now safe to send.
    pub text: String,
    /// A stop sequence completed: generation ends here, the stop sequence
    /// itself is not part of the answer.
    pub stopped: bool,
}

#[derive(Debug)]
pub(crate) struct TextOutput {
    pending: Vec<u8>,
    stops: Vec<Vec<u8>>,
}

impl TextOutput {
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            pending: Vec::new(),
            stops: stops
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Adds the bytes of one token.
    pub(crate) fn push(&mut self, piece: &[u8]) -> Step {
        self.pending.extend_from_slice(piece);
        if let Some(at) = self.first_stop() {
            self.pending.truncate(at);
            return Step {
                text: self.take_all(),
                stopped: true,
            };
        }
        let safe = self.pending.len() - self.longest_stop_prefix_suffix();
        let safe = utf8_complete_prefix(&self.pending[..safe]);
        let rest = self.pending.split_off(safe);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        Step {
            text,
            stopped: false,
        }
    }

    /// Whatever is held back, at the end of generation.
    pub(crate) fn finish(&mut self) -> String {
        self.take_all()
    }

    fn take_all(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }

    fn first_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|stop| {
                self.pending
                    .windows(stop.len())
                    .position(|w| w == stop.as_slice())
            })
            .min()
    }

    /// Length of the longest end of `pending` that begins some stop sequence.
    fn longest_stop_prefix_suffix(&self) -> usize {
        self.stops
            .iter()
            .map(|stop| {
                let max = stop.len().saturating_sub(1).min(self.pending.len());
                (1..=max)
                    .rev()
                    .find(|&n| self.pending.ends_with(&stop[..n]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

/// The length of `bytes` without a trailing, not yet complete UTF-8
/// character (invalid bytes elsewhere are left for lossy decoding).
fn utf8_complete_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut out = TextOutput::new(&stops);
        let mut text = String::new();
        for piece in pieces {
            let step = out.push(piece);
            text.push_str(&step.text);
            if step.stopped {
                return (text, true);
            }
        }
        text.push_str(&out.finish());
        (text, false)
    }

    #[test]
    fn stop_split_across_tokens_is_cut() {
        assert_eq!(
            run(&["END"], &[b"one E", b"N", b"D two"]),
            ("one ".into(), true)
        );
    }

    #[test]
    fn near_miss_of_stop_is_released() {
        assert_eq!(
            run(&["END"], &[b"one E", b"N", b"d"]),
            ("one ENd".into(), false)
        );
    }

    #[test]
    fn held_back_prefix_is_not_sent_early() {
        let mut out = TextOutput::new(&["\n\n".into()]);
        assert_eq!(out.push(b"a\n").text, "a");
        assert_eq!(out.push(b"b").text, "\nb");
    }

    #[test]
    fn multibyte_character_split_across_tokens_is_whole() {
        let euro = "€".as_bytes();
        let mut out = TextOutput::new(&[]);
        assert_eq!(out.push(&euro[..1]).text, "");
        assert_eq!(out.push(&euro[1..]).text, "€");
    }
}
