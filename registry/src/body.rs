//! Reading an answer's body into memory, never more than a cap: whether or not the server
//! sends `Content-Length`, and whatever it claims there. Every body the registry client
//! and the cloud logins hold whole goes through [`read_capped`].

/// Manifests and indexes: distribution refuses to store larger ones.
pub const MANIFEST: u64 = 4 << 20;
/// Token answers, login API answers and error texts.
pub const SMALL: u64 = 1 << 20;
/// One page of a tags list.
pub const TAGS_PAGE: u64 = 8 << 20;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over `limit` bytes.
    TooLarge {
        limit: u64,
    },
    Transport(reqwest::Error),
}

/// The whole body, or [`BodyError::TooLarge`] as soon as more than `limit` bytes arrive.
pub async fn read_capped(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Up to `limit` bytes of the body as text, the rest left unread: for error texts, of
/// which only the start is shown anyway.
pub async fn text_prefix(mut resp: reqwest::Response, limit: usize) -> String {
    let mut out = Vec::new();
    while out.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(limit - out.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body as text, within `limit`; a message that says which cap it broke otherwise.
pub async fn text_capped(resp: reqwest::Response, limit: u64) -> Result<String, String> {
    match read_capped(resp, limit).await {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(BodyError::TooLarge { limit }) => Err(format!("the answer is larger than {limit} bytes")),
        Err(BodyError::Transport(e)) => Err(crate::error_chain(&e)),
    }
}

/// Control characters (an escape sequence, a carriage return, a newline that would forge
/// another log line) escaped, so text a server sent stays one printable line wherever it
/// is shown.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_text_stays_one_printable_line() {
        assert_eq!(
            super::one_line("denied\x1b[2J\r\nbuild: pushed\x07 ok"),
            "denied\\u{1b}[2J\\r\\nbuild: pushed\\u{7} ok"
        );
        assert_eq!(super::one_line("plain text, ünïcode"), "plain text, ünïcode");
    }
}
