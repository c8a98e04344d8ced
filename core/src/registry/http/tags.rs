//! Tags: listing with pagination (`n`, `last` via `Link`), and deleting one tag without touching
//! other tags on the same manifest, also on registries that can only delete by digest.

use std::collections::HashSet;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::auth::{pull_scope, push_scope};
use super::client::{Call, Client, display_url, error_for_status};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Digest;
use crate::registry::Manifest;
use crate::registry::manifest::media_types;

/// A page of tags is refused past this size (tens of thousands of tags fit).
const MAX_TAG_PAGE: usize = 32 << 20;
/// A whole listing is refused past this many bytes of pages together: a million tags of the
/// longest valid name (128 characters) fit.
pub const MAX_TAG_LISTING_BYTES: usize = 128 << 20;
/// More pages than this is a registry sending us in circles.
const MAX_TAG_PAGES: usize = 100_000;

/// The OCI empty descriptor's content (`application/vnd.oci.empty.v1+json`).
pub(crate) const EMPTY_JSON: &[u8] = b"{}";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// The target of the `rel="next"` link in a `Link` header value (RFC 8288), as written.
pub(crate) fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let params_end = after[close..].find('<').map_or(after.len(), |i| close + i);
        let params = &after[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target);
        }
        rest = &after[params_end..];
    }
    None
}

/// What identifies a tag page among those already read: its URL's hash.
fn page_key(url: &url::Url) -> u64 {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(url.as_str())
}

/// An artifact manifest that exists only to be deleted: unique (random annotation), so deleting
/// it by digest removes exactly the one tag moved onto it.
pub(crate) fn throwaway_manifest() -> Manifest {
    let empty = Digest::of(EMPTY_JSON);
    let nonce = hex::encode(rand::rng().random::<[u8; 16]>());
    let json = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "artifactType": "application/vnd.regmirror.tag-deletion.v1",
        "config": { "mediaType": EMPTY_MEDIA_TYPE, "digest": empty.as_str(), "size": 2 },
        "layers": [ { "mediaType": EMPTY_MEDIA_TYPE, "digest": empty.as_str(), "size": 2 } ],
        "annotations": {
            "org.opencontainers.image.description":
                "placeholder regmirror pushes to delete a single tag; safe to remove",
            "io.regmirror.nonce": nonce,
        },
    });
    let bytes = serde_json::to_vec(&json).expect("a JSON value always serializes");
    Manifest::from_bytes(bytes, media_types::OCI_MANIFEST)
        .expect("the throwaway manifest is a valid OCI manifest")
}

impl Client {
    /// Every tag of `repo`, page by page, sorted. `None` when the repository does not exist.
    pub(crate) async fn list_tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let scopes = [pull_scope(repo)];
        let mut url = self.url(&format!("/v2/{repo}/tags/list")).await?;
        url.query_pairs_mut()
            .append_pair("n", &self.options.tags_page_size.max(1).to_string());
        let mut tags = Vec::new();
        // Pages asked for so far, as hashes of their URLs: a registry choosing long `Link`
        // targets cannot make this set large.
        let mut seen = HashSet::new();
        let mut listed_bytes = 0usize;
        loop {
            let what = format!("list tags of {repo}: GET {}", display_url(&url));
            let mut retries = 0;
            let (next, page_url, body) = loop {
                let resp = self
                    .send(Call::new(Method::GET, url.clone(), &scopes).follow_redirects())
                    .await
                    .map_err(|e| e.context(format!("list tags of {repo}")))?;
                if resp.status() == StatusCode::NOT_FOUND && seen.is_empty() {
                    return Ok(None);
                }
                let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
                let next = resp
                    .headers()
                    .get(LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_link)
                    .map(str::to_owned);
                let page_url = resp.url().clone();
                // `send` repeats a request until its headers arrive; a page cut off after that
                // is read again here (a listing failure fails the whole run).
                match self.read_limited(resp, MAX_TAG_PAGE, &what).await {
                    Ok(body) => break (next, page_url, body),
                    Err(e) => self.back_off_or_fail(e, &mut retries).await?,
                }
            };
            listed_bytes += body.len();
            if listed_bytes > MAX_TAG_LISTING_BYTES {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "{what}: the tag list is larger than the {MAX_TAG_LISTING_BYTES}-byte limit"
                    ),
                ));
            }
            let page: TagPage = serde_json::from_slice(&body).map_err(|e| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("{what}: the answer is not a tag list: {e}"),
                )
            })?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > self.options.max_tags {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "list tags of {repo}: the registry lists more than {} tags (the max_tags limit)",
                        self.options.max_tags
                    ),
                ));
            }
            seen.insert(page_key(&url));
            let Some(next) = next else {
                // Lexical order, as the distribution spec asks of registries and as the other
                // backends answer (distribution 2.8 pages are not sorted).
                tags.sort();
                tags.dedup();
                return Ok(Some(tags));
            };
            url = self.resolve(&page_url, &next)?;
            if seen.contains(&page_key(&url)) || seen.len() >= MAX_TAG_PAGES {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{what}: the registry's pagination goes in circles"),
                ));
            }
        }
    }

    /// Remove tag `tag` of `repo` and nothing else; `NotFound` if there is no such tag.
    ///
    /// A registry that supports `DELETE` by tag does it. Distribution 2.8 and others can only
    /// delete a manifest by digest, which also removes every other tag on that manifest; for
    /// them the tag is first moved onto a unique throwaway manifest, which is then deleted.
    pub(crate) async fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        let scopes = [push_scope(repo)];
        let what = format!("delete tag {repo}:{tag} on {}", self.host);
        let Some(original) = self.head_manifest(repo, tag, &scopes).await? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("{what}: there is no such tag"),
            ));
        };
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}")).await?;
        let resp = self
            .send(Call::new(Method::DELETE, url, &scopes))
            .await
            .map_err(|e| e.context(&what))?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => return Ok(()),
            StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {}
            _ => return Err(error_for_status(resp, &what).await),
        }
        drop(resp);

        let empty = Digest::of(EMPTY_JSON);
        if !self.has_blob(repo, &empty, &scopes).await? {
            let data = Box::pin(futures::stream::once(async {
                Ok(Bytes::from_static(EMPTY_JSON))
            }));
            self.push_blob(repo, &empty, EMPTY_JSON.len() as u64, data)
                .await
                .map_err(|e| e.context(&what))?;
        }
        // Deleting by digest must work before the tag is moved, or the tag would be left on
        // the placeholder. A registry refusing it keeps the probe: nothing can remove it.
        let probe = throwaway_manifest();
        self.put_manifest(repo, probe.digest.as_str(), &probe, &scopes)
            .await
            .map_err(|e| e.context(&what))?;
        self.delete_manifest(
            repo,
            &probe.digest,
            &scopes,
            &format!("{what}: the registry deletes neither by tag nor by digest"),
        )
        .await?;

        let placeholder = throwaway_manifest();
        // Keep the tag's manifest to put it back if deleting the placeholder fails.
        let previous = self
            .get_manifest(repo, original.digest.as_str(), &scopes)
            .await
            .map_err(|e| e.context(&what))?;
        self.put_manifest(repo, tag, &placeholder, &scopes)
            .await
            .map_err(|e| e.context(&what))?;
        // The placeholder's URL means nothing to the reader: the error names the tag.
        let moved = format!("{what}: deleting by digest the placeholder the tag was moved onto");
        if let Err(e) = self
            .delete_manifest(repo, &placeholder.digest, &scopes, &moved)
            .await
        {
            match self.put_manifest(repo, tag, &previous, &scopes).await {
                // Untagged again, the placeholder can go if the refusal was passing; when the
                // registry refuses for good it stays, an untagged manifest.
                Ok(_) => {
                    if let Err(cleanup) = self
                        .delete_manifest(repo, &placeholder.digest, &scopes, &moved)
                        .await
                    {
                        let cleanup = self.secrets.scrub(&cleanup.to_string()).into_owned();
                        tracing::debug!(target: "regmirror::http", "{cleanup}");
                    }
                }
                Err(restore) => tracing::warn!(
                    target: "regmirror::http",
                    "{what}: could not put the tag back on {}: {}",
                    previous.digest,
                    self.secrets.scrub(&restore.to_string())
                ),
            }
            return Err(e);
        }
        Ok(())
    }

    /// Delete manifest `digest` of `repo`; errors say `what` (the manifest's URL may mean
    /// nothing to the reader).
    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        scopes: &[String],
        what: &str,
    ) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}")).await?;
        let resp = self
            .send(Call::new(Method::DELETE, url, scopes))
            .await
            .map_err(|e| e.context(what))?;
        // A repeated DELETE (the first one's answer lost) finds nothing to delete: done, if
        // the manifest is indeed gone. A registry answering 404 for what it keeps is not.
        if resp.status() == StatusCode::NOT_FOUND
            && self
                .head_manifest(repo, digest.as_str(), scopes)
                .await
                .map_err(|e| e.context(what))?
                .is_none()
        {
            return Ok(());
        }
        self.expect(resp, &[StatusCode::ACCEPTED, StatusCode::OK], what)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=t9&n=10>; rel="next""#),
            Some("/v2/a/tags/list?last=t9&n=10")
        );
        assert_eq!(
            next_link(
                r#"<https://r.example/v2/a/tags/list?n=2&last=b,c>; rel="prev", <https://r.example/v2/a/tags/list?n=2&last=d>; rel=next"#
            ),
            Some("https://r.example/v2/a/tags/list?n=2&last=d")
        );
        assert_eq!(
            next_link(r#"</x>; title="a"; rel="start next""#),
            Some("/x")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
    }

    #[test]
    fn throwaway_manifests_are_unique_valid_artifacts() {
        let a = throwaway_manifest();
        let b = throwaway_manifest();
        assert_ne!(a.digest, b.digest);
        assert_eq!(a.media_type, media_types::OCI_MANIFEST);
        let crate::registry::ManifestKind::Image { config, layers } = a.kind().unwrap() else {
            panic!("not an image manifest");
        };
        assert_eq!(config.digest, Digest::of(EMPTY_JSON));
        assert_eq!(layers.len(), 1);
    }
}
