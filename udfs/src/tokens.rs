//! The one tokenizer behind `tokenize` and `bm25`, so both agree on what a word is.

/// Calls `emit` with each lower-cased run of Unicode letters and digits in `text`.
///
/// Tokens are lower-cased whole, so context rules such as the Greek final sigma apply.
/// `buffer` is reused across calls so tokenizing a column allocates only as it grows.
pub(crate) fn for_each_token(text: &str, buffer: &mut String, mut emit: impl FnMut(&str)) {
    let mut start = None;
    for (index, ch) in text.char_indices() {
        match (ch.is_alphanumeric(), start) {
            (true, None) => start = Some(index),
            (false, Some(begin)) => {
                emit(lower(&text[begin..index], buffer));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(begin) = start {
        emit(lower(&text[begin..], buffer));
    }
}

/// The token in lower case, borrowed as is when it already is (no copy for clean text).
fn lower<'a>(token: &'a str, buffer: &'a mut String) -> &'a str {
    if token.is_ascii() {
        if !token.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return token;
        }
        buffer.clear();
        buffer.push_str(token);
        buffer.make_ascii_lowercase();
    } else {
        buffer.clear();
        buffer.push_str(&token.to_lowercase());
    }
    buffer
}
