//! Reading a guest request: the mandatory headers (spec §1.3), the query string (§1.4, §1.5)
//! and percent-encoded path segments. Everything here returns a [`GuestError`] on bad input;
//! nothing panics on any byte sequence hyper lets through.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue};

use crate::guest::error::GuestError;
use crate::metadata::version::ApiVersion;

/// More parameters than any client sends; beyond this a query is rejected, not scanned.
const MAX_QUERY_PARAMETERS: usize = 32;

/// `X-Forwarded-For` absent, and exactly one `Metadata` header whose value is `true` in any
/// ASCII case (§1.3: real clients send `True`).
pub(super) fn check_headers(headers: &HeaderMap) -> Result<(), GuestError> {
    check_headers_given(&HeaderFacts::read(headers))
}

/// [`check_headers`] when the [`HeaderFacts`] are already read.
pub(super) fn check_headers_given(facts: &HeaderFacts) -> Result<(), GuestError> {
    if facts.forwarded_for {
        return Err(GuestError::ForwardedFor);
    }
    if facts.metadata {
        Ok(())
    } else {
        Err(GuestError::MissingMetadataHeader)
    }
}

/// What the guest plane reads of a request's headers, found in one pass over them: a
/// `HeaderMap` lookup hashes its name and probes the table (about 120 instructions each,
/// callgrind), and a request has a handful of headers to walk.
#[derive(Clone, Debug, Default)]
pub(super) struct HeaderFacts {
    /// Exactly one `Metadata` header, whose value is `true` in any ASCII case.
    pub(super) metadata: bool,
    /// An `X-Forwarded-For` header is present.
    pub(super) forwarded_for: bool,
    /// The first `User-Agent`, for the journal (a cheap clone: it shares hyper's buffer).
    pub(super) user_agent: Option<HeaderValue>,
}

impl HeaderFacts {
    pub(super) fn read(headers: &HeaderMap) -> HeaderFacts {
        let mut facts = HeaderFacts::default();
        let mut metadata_values = 0u32;
        for (name, value) in headers {
            // Names are lower case: hyper and `HeaderName` normalize them.
            match name.as_str() {
                "metadata" => {
                    metadata_values += 1;
                    facts.metadata = metadata_values == 1
                        && value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"true");
                }
                "x-forwarded-for" => facts.forwarded_for = true,
                "user-agent" if facts.user_agent.is_none() => {
                    facts.user_agent = Some(value.clone());
                }
                _ => {}
            }
        }
        facts
    }
}

/// Parameters kept without allocating; more than this spill to a `Vec`.
const INLINE_PARAMETERS: usize = 4;

type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// A decoded query string. Parameter names are case-sensitive (§1.4: `Api-Version` is not
/// `api-version`). Every guest request parses one, and real clients send one to three
/// parameters: those are kept inline. The names nearly every request carries ([`Known`]) are
/// located while parsing, so reading them, and checking them for duplicates, compares no
/// strings.
#[derive(Debug, Default)]
pub(super) struct Query<'a> {
    inline: [Pair<'a>; INLINE_PARAMETERS],
    count: usize,
    more: Vec<Pair<'a>>,
    /// Per [`Known`] name, the index of its first pair.
    known_at: [Option<u8>; KNOWN_NAMES],
    /// Bit `k` set: [`Known`] name `k` came more than once.
    known_twice: u8,
    /// How many pairs have a name that is not [`Known`].
    unknown: usize,
}

/// Parameter names located while parsing.
#[derive(Clone, Copy, Debug)]
enum Known {
    ApiVersion,
    Format,
    Extended,
}

const KNOWN_NAMES: usize = 3;

impl Known {
    fn of(name: &str) -> Option<Known> {
        match name {
            "api-version" => Some(Known::ApiVersion),
            "format" => Some(Known::Format),
            "extended" => Some(Known::Extended),
            _ => None,
        }
    }
}

/// `text` split at every `separator` (an ASCII byte), as `str::split` would, without its
/// general pattern searcher (which costs more than these few bytes do).
pub(super) fn split_ascii(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(|b| b == separator) {
            Some(at) => {
                rest = Some(&current[at + 1..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

impl<'a> Query<'a> {
    pub(super) fn parse(raw: Option<&'a str>) -> Result<Query<'a>, GuestError> {
        let raw = raw.unwrap_or("");
        let mut query = Query::default();
        // One pass over the bytes finds where each pair ends, its first `=` and whether it has
        // escapes (separate searches for each cost twice as much on these short strings).
        let mut start = 0;
        let mut equals = None;
        let mut escaped = false;
        for (at, byte) in raw.bytes().enumerate() {
            match byte {
                b'&' => {
                    query.push(raw, start..at, equals, escaped)?;
                    start = at + 1;
                    equals = None;
                    escaped = false;
                }
                b'=' if equals.is_none() => equals = Some(at),
                b'%' | b'+' => escaped = true,
                _ => {}
            }
        }
        query.push(raw, start..raw.len(), equals, escaped)?;
        Ok(query)
    }

    /// Adds the pair at `span` of `raw` (skipped when empty), split at `equals` and decoded
    /// when `escaped`.
    fn push(
        &mut self,
        raw: &'a str,
        span: std::ops::Range<usize>,
        equals: Option<usize>,
        escaped: bool,
    ) -> Result<(), GuestError> {
        if span.is_empty() {
            return Ok(());
        }
        if self.count == MAX_QUERY_PARAMETERS {
            return Err(GuestError::TooManyParameters);
        }
        // The separators are ASCII, so every bound is a character boundary.
        let (name, value) = match equals {
            Some(at) => (&raw[span.start..at], &raw[at + 1..span.end]),
            None => (&raw[span], ""),
        };
        let decoded = if escaped {
            (decode(name, true)?, decode(value, true)?)
        } else {
            (Cow::Borrowed(name), Cow::Borrowed(value))
        };
        match Known::of(&decoded.0) {
            Some(known) => match &mut self.known_at[known as usize] {
                Some(_) => self.known_twice |= 1 << known as u8,
                // Below MAX_QUERY_PARAMETERS, so it fits.
                first @ None => *first = Some(self.count as u8),
            },
            None => self.unknown += 1,
        }
        match self.inline.get_mut(self.count) {
            Some(slot) => *slot = decoded,
            None => self.more.push(decoded),
        }
        self.count += 1;
        Ok(())
    }

    /// Every pair, in request order.
    fn all(&self) -> impl Iterator<Item = &Pair<'a>> {
        self.inline[..self.count.min(INLINE_PARAMETERS)]
            .iter()
            .chain(&self.more)
    }

    /// The pair at `index`, in request order.
    fn at(&self, index: usize) -> &Pair<'a> {
        match self.inline[..self.count.min(INLINE_PARAMETERS)].get(index) {
            Some(pair) => pair,
            None => &self.more[index - INLINE_PARAMETERS],
        }
    }

    /// The value of a parameter that may appear at most once.
    pub(super) fn single(&self, name: &str) -> Result<Option<&str>, GuestError> {
        if let Some(known) = Known::of(name) {
            return self.known(known);
        }
        let mut values = self
            .all()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref());
        match (values.next(), values.next()) {
            (_, Some(_)) => Err(GuestError::DuplicateParameter),
            (value, None) => Ok(value),
        }
    }

    /// [`Query::single`] of a [`Known`] name.
    fn known(&self, known: Known) -> Result<Option<&str>, GuestError> {
        if self.known_twice & (1 << known as u8) != 0 {
            return Err(GuestError::DuplicateParameter);
        }
        Ok(self.known_at[known as usize].map(|at| self.at(usize::from(at)).1.as_ref()))
    }

    /// Every decoded `(name, value)`, in request order.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.all().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The api-version, which must be present, unique and supported.
    pub(super) fn api_version(&self) -> Result<ApiVersion, GuestError> {
        match self.known(Known::ApiVersion)? {
            Some(text) => ApiVersion::parse(text).ok_or(GuestError::ApiVersion),
            None => Err(GuestError::ApiVersion),
        }
    }

    /// Rejects any parameter given twice (§1.5).
    pub(super) fn reject_duplicates(&self) -> Result<(), GuestError> {
        if self.known_twice != 0 {
            return Err(GuestError::DuplicateParameter);
        }
        if self.unknown < 2 {
            // A known name never equals an unknown one: nothing left to compare.
            return Ok(());
        }
        let unknown = || self.all().filter(|(name, _)| Known::of(name).is_none());
        for (i, (name, _)) in unknown().enumerate() {
            if unknown().take(i).any(|(earlier, _)| earlier == name) {
                return Err(GuestError::DuplicateParameter);
            }
        }
        Ok(())
    }

    /// `format`: JSON unless `text` is asked for (§1.7); values match in any ASCII case.
    pub(super) fn format(&self) -> Result<Format, GuestError> {
        match self.known(Known::Format)? {
            None => Ok(Format::Json),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Format::Json),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(Format::Text),
            Some(_) => Err(GuestError::BadFormat),
        }
    }

    /// `extended=true` (§3.9).
    pub(super) fn extended(&self) -> Result<bool, GuestError> {
        match self.known(Known::Extended)? {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(GuestError::BadExtended),
        }
    }
}

/// The response format a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Text,
}

/// The part of a path after an endpoint's root, as decoded segments. One trailing slash is
/// ignored (§1.7, [UNCERTAIN]); an empty segment elsewhere names nothing.
#[derive(Clone, Copy, Debug)]
pub(super) struct PathSegments<'a> {
    /// Without its leading and trailing slash; every segment decodes.
    rest: &'a str,
}

impl<'a> PathSegments<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The decoded segments (borrowed unless percent-encoded: no allocation on the usual path).
    pub(super) fn iter(&self) -> impl Iterator<Item = Cow<'a, str>> + use<'a> {
        let rest = self.rest;
        (!rest.is_empty())
            .then(|| split_ascii(rest, b'/'))
            .into_iter()
            .flatten()
            .map(|segment| decode(segment, false).unwrap_or(Cow::Borrowed(segment)))
    }
}

/// Checks that every segment of `rest` decodes; `BadEncoding` otherwise.
pub(super) fn path_segments(rest: &str) -> Result<PathSegments<'_>, GuestError> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if !rest.is_empty() {
        for segment in split_ascii(rest, b'/') {
            decode(segment, false)?;
        }
    }
    Ok(PathSegments { rest })
}

/// Strict percent-decoding: a `%` must start two hex digits, and the result must be UTF-8.
/// In a query, `+` is a space (form encoding, as every HTTP stack in front of IMDS treats it).
fn decode(text: &str, plus_is_space: bool) -> Result<Cow<'_, str>, GuestError> {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(GuestError::BadEncoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| GuestError::BadEncoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| GuestError::BadEncoding)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| GuestError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_header_value_is_case_insensitive_true_only() {
        for (value, ok) in [
            ("true", true),
            ("True", true),
            (" TRUE ", true),
            ("false", false),
            ("1", false),
            ("", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("Metadata", HeaderValue::from_str(value).unwrap());
            assert_eq!(check_headers(&headers).is_ok(), ok, "{value:?}");
        }
        let mut twice = HeaderMap::new();
        twice.append("metadata", HeaderValue::from_static("true"));
        twice.append("metadata", HeaderValue::from_static("true"));
        assert_eq!(
            check_headers(&twice),
            Err(GuestError::MissingMetadataHeader)
        );
    }

    #[test]
    fn query_decoding_is_strict() {
        let q = Query::parse(Some("api-version=2021-02-01&format=te%78t&x=a+b")).unwrap();
        assert_eq!(q.api_version(), Ok(ApiVersion::V2021_02_01));
        assert_eq!(q.format(), Ok(Format::Text));
        assert_eq!(q.single("x"), Ok(Some("a b")));
        assert_eq!(
            Query::parse(Some("a=%zz")).unwrap_err(),
            GuestError::BadEncoding
        );
        assert_eq!(
            Query::parse(Some("a=%4")).unwrap_err(),
            GuestError::BadEncoding
        );
        assert_eq!(
            Query::parse(Some("a=%ff")).unwrap_err(),
            GuestError::BadEncoding
        );
        let dup = Query::parse(Some("api-version=2021-02-01&api-version=2021-02-01")).unwrap();
        assert_eq!(dup.api_version(), Err(GuestError::DuplicateParameter));
        let case = Query::parse(Some("Api-Version=2021-02-01")).unwrap();
        assert_eq!(case.api_version(), Err(GuestError::ApiVersion));
        let spilled = Query::parse(Some("a=1&&b=2&c&d=4&e=5=6&f=%2B")).unwrap();
        let pairs: Vec<_> = spilled.pairs().collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", "2"),
                ("c", ""),
                ("d", "4"),
                ("e", "5=6"),
                ("f", "+")
            ]
        );
        assert_eq!(spilled.single("f"), Ok(Some("+")));
        assert_eq!(
            Query::parse(Some("a=1&b=2&c=3&d=4&e=5&b=6"))
                .unwrap()
                .reject_duplicates(),
            Err(GuestError::DuplicateParameter)
        );
        // A known name is the same parameter however it was encoded.
        let encoded =
            Query::parse(Some("api%2Dversion=2021-02-01&api-version=2021-02-01")).unwrap();
        assert_eq!(encoded.api_version(), Err(GuestError::DuplicateParameter));
        assert_eq!(
            encoded.reject_duplicates(),
            Err(GuestError::DuplicateParameter)
        );
        let mixed = Query::parse(Some("format=text&x=1&api-version=2021-02-01&x=2")).unwrap();
        assert_eq!(mixed.format(), Ok(Format::Text));
        assert_eq!(mixed.single("x"), Err(GuestError::DuplicateParameter));
        assert_eq!(
            mixed.reject_duplicates(),
            Err(GuestError::DuplicateParameter)
        );
        let spilled_known = Query::parse(Some("a=1&b=2&c=3&d=4&e=5&extended=true")).unwrap();
        assert_eq!(spilled_known.extended(), Ok(true));
        assert_eq!(spilled_known.reject_duplicates(), Ok(()));
        let many = "a=1&".repeat(40);
        assert_eq!(
            Query::parse(Some(&many)).unwrap_err(),
            GuestError::TooManyParameters
        );
    }

    #[test]
    fn path_segments_decode_and_ignore_one_trailing_slash() {
        let segments = |rest| -> Vec<String> {
            let segments = path_segments(rest).unwrap();
            segments.iter().map(Cow::into_owned).collect()
        };
        assert!(path_segments("").unwrap().is_empty());
        assert!(path_segments("/").unwrap().is_empty());
        assert!(segments("/").is_empty());
        assert_eq!(segments("/compute/tags%4Cist/"), ["compute", "tagsList"]);
        assert_eq!(segments("/compute//name"), ["compute", "", "name"]);
        assert!(segments("//").is_empty());
        assert_eq!(segments("/a///"), ["a", "", ""]);
        assert_eq!(
            path_segments("/a%c3%28").unwrap_err(),
            GuestError::BadEncoding
        );
    }
}
