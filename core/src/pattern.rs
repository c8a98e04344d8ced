//! Tag selection by patterns (SEMANTICS.md §2): Quay's shell-style globs, plus opt-in
//! `regex:`, `semver:` and `!` exclusions.
//!
//! Globs are matched with `globset`. Its syntax is a superset of fnmatch's, so each pattern is
//! first rewritten into a globset pattern that means exactly the fnmatch one: braces become
//! literal, `[^x]` becomes a literal set containing `^`, and backslash escapes are off.

use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;

use crate::error::{Error, ErrorKind, Result};

/// A compiled list of tag patterns. A tag is selected when any positive pattern matches it and
/// no `!` exclusion does.
#[derive(Clone)]
pub struct TagFilter {
    patterns: Vec<String>,
    include: Vec<Matcher>,
    exclude: Vec<Matcher>,
}

#[derive(Clone)]
enum Matcher {
    Glob(GlobMatcher),
    Regex(Regex),
    Semver(semver::VersionReq),
}

impl std::fmt::Debug for TagFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TagFilter").field(&self.patterns).finish()
    }
}

impl PartialEq for TagFilter {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl TagFilter {
    /// Compile a list of patterns. Each entry may itself be comma-separated; entries are trimmed
    /// and empty ones dropped. No pattern at all, or an invalid one, is `InvalidPattern`.
    pub fn new<I, S>(patterns: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns: Vec<String> = patterns
            .into_iter()
            .flat_map(|p| split_patterns(p.as_ref()))
            .collect();
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for pattern in &patterns {
            match pattern.strip_prefix('!') {
                Some(rest) => exclude.push(compile(pattern, rest)?),
                None => include.push(compile(pattern, pattern)?),
            }
        }
        if include.is_empty() {
            let why = if patterns.is_empty() {
                "the pattern list is empty; give at least one tag pattern".to_owned()
            } else {
                format!("{patterns:?} has only exclusions; add a pattern that selects tags")
            };
            return Err(Error::new(ErrorKind::InvalidPattern, why));
        }
        Ok(TagFilter {
            patterns,
            include,
            exclude,
        })
    }

    /// Compile one comma-separated string (`"v3.*, latest"`).
    pub fn parse(patterns: &str) -> Result<Self> {
        Self::new([patterns])
    }

    /// The patterns, split and trimmed, in the order given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `tag` is selected.
    pub fn matches(&self, tag: &str) -> bool {
        self.include.iter().any(|m| m.matches(tag)) && !self.exclude.iter().any(|m| m.matches(tag))
    }

    /// The selected tags, sorted and deduplicated.
    pub fn select<I, S>(&self, tags: I) -> Vec<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut selected: Vec<String> = tags
            .into_iter()
            .filter(|t| self.matches(t.as_ref()))
            .map(|t| t.as_ref().to_owned())
            .collect();
        selected.sort_unstable();
        selected.dedup();
        selected
    }
}

impl Matcher {
    fn matches(&self, tag: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(tag),
            Matcher::Regex(r) => r.is_match(tag),
            Matcher::Semver(req) => parse_version(tag).is_some_and(|v| req.matches(&v)),
        }
    }
}

/// Split a comma-separated pattern list, trimming entries and dropping empty ones. Commas that
/// belong to a pattern stay: inside a `regex:` quantifier or class (`{1,3}`, `[,]`), and between
/// the comparators of a `semver:` range (`semver:>=1.2, <2`) — a piece starting with a
/// comparator can never be a tag glob, since tags start with `[A-Za-z0-9_]`.
fn split_patterns(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let push = |piece: &str, out: &mut Vec<String>| {
        let piece = piece.trim();
        let continues_semver = piece.starts_with(['<', '>', '=', '~', '^'])
            && out
                .last()
                .is_some_and(|p| p.trim_start_matches('!').starts_with("semver:"));
        match out.last_mut() {
            Some(last) if continues_semver => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ if piece.is_empty() => {}
            _ => out.push(piece.to_owned()),
        }
    };
    for c in list.chars() {
        let in_regex = current
            .trim_start()
            .trim_start_matches('!')
            .starts_with("regex:");
        match c {
            ',' if depth == 0 || !in_regex => {
                push(&current, &mut out);
                current.clear();
                depth = 0;
                continue;
            }
            '{' | '[' | '(' if in_regex => depth += 1,
            '}' | ']' | ')' if in_regex => depth = depth.saturating_sub(1),
            _ => {}
        }
        current.push(c);
    }
    push(&current, &mut out);
    out
}

/// Tags are often written `v1.2.3`; the `v` is accepted, anything else must be strict semver.
fn parse_version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

fn compile(original: &str, pattern: &str) -> Result<Matcher> {
    let invalid = |why: String| {
        Error::new(
            ErrorKind::InvalidPattern,
            format!("invalid tag pattern {original:?}: {why}"),
        )
    };
    if let Some(re) = pattern.strip_prefix("regex:") {
        return Regex::new(&format!("^(?:{re})$"))
            .map(Matcher::Regex)
            .map_err(|e| invalid(format!("bad regular expression: {e}")));
    }
    if let Some(range) = pattern.strip_prefix("semver:") {
        return semver::VersionReq::parse(range)
            .map(Matcher::Semver)
            .map_err(|e| invalid(format!("bad semver range: {e}")));
    }
    if pattern.is_empty() {
        return Err(invalid("nothing follows '!'".to_owned()));
    }
    let glob = to_globset(pattern).map_err(|pos| {
        invalid(format!(
            "unclosed '[' at position {pos} (a character set needs a closing ']')"
        ))
    })?;
    GlobBuilder::new(&glob)
        .literal_separator(false)
        .backslash_escape(false)
        .empty_alternates(false)
        .build()
        .map(|g| Matcher::Glob(g.compile_matcher()))
        .map_err(|e| invalid(e.kind().to_string()))
}

/// Rewrite an fnmatch pattern as a globset pattern with the same meaning, or return the
/// (0-based, in characters) position of an unclosed `[`.
fn to_globset(pattern: &str) -> std::result::Result<String, usize> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                let start = i;
                let mut j = i + 1;
                let negated = chars.get(j) == Some(&'!');
                if negated {
                    j += 1;
                }
                // A ']' right after '[' or '[!' is a member, as in fnmatch.
                let first_member = j;
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(start);
                }
                let members: String = chars[first_member..j].iter().collect();
                out.push('[');
                if negated {
                    out.push('!');
                }
                // globset reads a leading '^' as negation; fnmatch does not. Move it last.
                match members.strip_prefix('^') {
                    Some(rest) if !rest.is_empty() => {
                        out.push_str(rest);
                        out.push('^');
                    }
                    _ => out.push_str(&members),
                }
                out.push(']');
                i = j + 1;
            }
            // Literal in fnmatch, special in globset.
            c @ ('{' | '}') => {
                out.push('[');
                out.push(c);
                out.push(']');
                i += 1;
            }
            '*' => {
                // Runs of stars mean one star; globset gives `**` a directory meaning.
                out.push('*');
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGS: [&str; 5] = ["v32", "v3.1", "v3.2", "v3.2-4beta", "v3.3"];

    fn select(pattern: &str, tags: &[&str]) -> Vec<String> {
        TagFilter::parse(pattern).unwrap().select(tags)
    }

    #[test]
    fn quay_reference_table() {
        let table: [(&str, &[&str]); 6] = [
            ("v3*", &["v3.1", "v3.2", "v3.2-4beta", "v3.3", "v32"]),
            ("v3.*", &["v3.1", "v3.2", "v3.2-4beta", "v3.3"]),
            ("v3.?", &["v3.1", "v3.2", "v3.3"]),
            ("v3.[12]", &["v3.1", "v3.2"]),
            ("v3.[12]*", &["v3.1", "v3.2", "v3.2-4beta"]),
            ("v3.[!1]*", &["v3.2", "v3.2-4beta", "v3.3"]),
        ];
        for (pattern, expected) in table {
            assert_eq!(select(pattern, &TAGS), expected, "pattern {pattern}");
        }
    }

    #[test]
    fn fnmatch_edge_cases() {
        assert_eq!(select("v[^1]", &["v1", "v^", "v2"]), ["v1", "v^"]);
        assert_eq!(select("v[*]", &["v*", "vx", "v"]), ["v*"]);
        assert!(select("V3.*", &TAGS).is_empty());
        assert!(select("v3", &TAGS).is_empty());
        assert_eq!(select("{a}", &["a", "{a}"]), ["{a}"]);
        assert_eq!(select(r"a\*", &[r"a\x", "a*"]), [r"a\x"]);
        assert_eq!(select("a**b", &["ab", "axyb"]), ["ab", "axyb"]);
        assert_eq!(select("[]a]", &["]", "a", "b"]), ["]", "a"]);
        assert_eq!(select("[a-c]x", &["ax", "bx", "dx"]), ["ax", "bx"]);
    }

    #[test]
    fn lists_and_comma_strings() {
        let f = TagFilter::parse(" v3.1 ,, latest ,").unwrap();
        assert_eq!(f.patterns(), ["v3.1", "latest"]);
        let f = TagFilter::new(["v3.1", "latest,v3.3"]).unwrap();
        assert_eq!(
            f.select(["latest", "v3.3", "v3.1", "latest"]),
            ["latest", "v3.1", "v3.3"]
        );
    }

    #[test]
    fn regex_semver_and_exclusions() {
        assert_eq!(
            select(r"regex:v\d+", &["v1", "v12", "v1.2", "xv1"]),
            ["v1", "v12"]
        );
        assert_eq!(
            select(
                "semver:>=1.2, <2",
                &["1.1.0", "v1.2.0", "1.9.9", "2.0.0", "latest"]
            ),
            ["1.9.9", "v1.2.0"]
        );
        assert_eq!(select("v*, !*-rc*", &["v1", "v2-rc1", "v2"]), ["v1", "v2"]);
        assert_eq!(
            select(r"regex:v\d{1,2}, latest", &["v1", "v123", "latest"]),
            ["latest", "v1"]
        );
        let f = TagFilter::parse("semver:>=1.2, <2, latest").unwrap();
        assert_eq!(f.patterns(), ["semver:>=1.2, <2", "latest"]);
    }

    #[test]
    fn invalid_patterns_name_the_pattern() {
        for bad in ["v3.[12", "regex:(", "semver:>>1", "", " , ", "!x", "!"] {
            let e = TagFilter::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidPattern, "{bad:?}");
            if !bad.trim().trim_matches(',').trim().is_empty() {
                assert!(e.message().contains(bad.trim()), "{bad:?}: {e}");
            }
        }
        let e = TagFilter::parse("ok, v3.[12").unwrap_err();
        assert!(e.message().contains("position 3"), "{e}");
    }
}
