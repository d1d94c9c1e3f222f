//! Listing a repository's tags, page by page.

use reqwest::{Method, StatusCode};

use crate::call::{Access, Call, header_str};
use crate::client::Client;
use crate::error::RegistryError;

/// Tags asked for per page; registries may answer fewer and point to the next page.
const PAGE: usize = 1000;
/// A bound on pages, so a registry that loops its `Link` header cannot keep us forever.
const MAX_PAGES: usize = 10_000;
/// A bound on tags, so a registry that sends page after page cannot fill memory.
const MAX_TAGS: usize = 1_000_000;

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// Every tag of the repository, in the registry's order. A repository that does not
    /// exist yet has no tags.
    pub async fn list_tags(&self) -> Result<Vec<String>, RegistryError> {
        let mut tags = Vec::new();
        let mut target = format!("/v2/{}/tags/list?n={PAGE}", self.repo.path());
        for _ in 0..MAX_PAGES {
            let call = Call::new(Method::GET, target.clone(), Access::Pull, format!("tags of {}", self.repo));
            let resp = self.execute(&call).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            let resp = self.expect_success(resp, &call.what).await?;
            let next = header_str(resp.headers(), "link").and_then(next_link);
            let body = self.read_body(resp, crate::body::TAGS_PAGE, &call.what).await?;
            let page: TagList = serde_json::from_slice(&body).map_err(|e| RegistryError::Status {
                registry: self.repo.registry().into(),
                what: call.what.clone(),
                status: StatusCode::OK,
                body: format!(": not a tags list ({e})"),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > MAX_TAGS {
                return Err(RegistryError::Status {
                    registry: self.repo.registry().into(),
                    what: call.what.clone(),
                    status: StatusCode::OK,
                    body: format!(": more than {MAX_TAGS} tags, where kiln stops"),
                });
            }
            match next {
                Some(n) if n != target => target = n,
                _ => return Ok(tags),
            }
        }
        Ok(tags)
    }
}

/// The `rel="next"` target of a `Link` header: `</v2/x/tags/list?n=2&last=b>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (url, params) = link.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#), Some("/v2/a/tags/list?last=b&n=2".into()));
        assert_eq!(next_link(r#"<https://r/v2/a/tags/list?last=b>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}
