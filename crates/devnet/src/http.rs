//! What tests that send oversized bodies need of an HTTP client.

/// Sends `request`, again (up to 8 tries) when the connection broke while
/// the body was being written: a server that refuses a body before reading
/// it all answers and closes, and the client, still writing, may lose the
/// answer to the reset (hyper's client does not read it after a failed
/// write). A request whose body cannot be cloned is sent once.
pub async fn send_past_resets(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    for _ in 1..8 {
        let Some(attempt) = request.try_clone() else {
            break;
        };
        match attempt.send().await {
            Err(e) if e.is_request() => continue,
            done => return done,
        }
    }
    request.send().await
}
