//! The answer format the shipped dataset teaches: `<<ZG>> answer <</ZG>>`,
//! one line. The base model never writes it, so a model that does has
//! learnt from the adapter.

/// The opening tag of every answer in `data/`.
const OPEN: &str = "<<ZG>>";
/// The closing tag of every answer in `data/`.
const CLOSE: &str = "<</ZG>>";

/// Whether `text` (surrounding whitespace aside) is exactly one
/// `<<ZG>> answer <</ZG>>` with a non-empty one-line answer.
pub fn follows_format(text: &str) -> bool {
    let Some(inner) = text
        .trim()
        .strip_prefix(OPEN)
        .and_then(|rest| rest.strip_suffix(CLOSE))
    else {
        return false;
    };
    let Some(answer) = inner.strip_prefix(' ').and_then(|a| a.strip_suffix(' ')) else {
        return false;
    };
    !answer.trim().is_empty()
        && !answer.contains('\n')
        && !answer.contains(OPEN)
        && !answer.contains(CLOSE)
}
