//! `check`: which versions of the image exist, oldest first, ending with the newest.

use kiln_registry::Client;

use crate::protocol::{CheckRequest, Version};

/// Answers a check request. Only single-tag mode exists so far; tag listing
/// (semver, regex) comes with the resource's full check.
pub async fn check(req: CheckRequest) -> anyhow::Result<Vec<Version>> {
    let repo = req.source.validate()?;
    let Some(tag) = req.source.tag.clone() else {
        anyhow::bail!(
            "source.tag is not set: checking without a tag (semver versions, tag_regex) is not implemented yet; set source.tag"
        );
    };
    let client = Client::new(repo, req.source.client_config())?;
    check_tag(&client, &tag, req.version.as_ref()).await
}

/// Single-tag mode: the tag's current digest, preceded by the previous version
/// while that digest still exists in the repository.
async fn check_tag(client: &Client, tag: &str, previous: Option<&Version>) -> anyhow::Result<Vec<Version>> {
    let Some(current) = client.head_manifest(tag).await? else {
        eprintln!("check: tag {tag} does not exist in {}", client.repository());
        return Ok(Vec::new());
    };
    let mut versions = Vec::new();
    if let Some(prev) = previous.filter(|p| p.digest != current.digest)
        && kiln_registry::reference::validate_digest(&prev.digest).is_ok()
        && client.head_manifest(&prev.digest).await?.is_some()
    {
        versions.push(prev.clone());
    }
    versions.push(Version { tag: tag.to_string(), digest: current.digest });
    Ok(versions)
}
