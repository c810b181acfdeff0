//! Just enough `multipart/form-data` reading for the image upload API: the boundary from the
//! content type, then each part's name, file name and bytes. Anything malformed is `None`.

/// One form field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub data: &'a [u8],
}

/// The boundary parameter of a multipart content type.
fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"'))
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `key="value"` parameter from a `Content-Disposition` line.
fn disposition_param(line: &str, key: &str) -> Option<String> {
    line.split(';').find_map(|item| {
        let (k, v) = item.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits a body into its parts.
pub(crate) fn parse<'a>(content_type: &str, body: &'a [u8]) -> Option<Vec<Part<'a>>> {
    let boundary = boundary(content_type)?;
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let mut rest = body.strip_prefix(opening.as_bytes())?;
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..header_end]).ok()?;
        let content = &rest[header_end + 4..];
        let end = find(content, delimiter.as_bytes())?;
        let disposition = head.lines().find(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-disposition"))
        })?;
        parts.push(Part {
            name: disposition_param(disposition, "name")?,
            filename: disposition_param(disposition, "filename"),
            data: &content[..end],
        });
        rest = &content[end + delimiter.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"data\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"use_case\"\r\n\r\nMAIN_IMAGE\r\n--XyZ--\r\n";
        let parts = parse("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "data");
        assert_eq!(parts[0].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[0].data, b"\x89PNG\r\n\x1a\n");
        assert_eq!(parts[1].name, "use_case");
        assert_eq!(parts[1].data, b"MAIN_IMAGE");
    }

    #[test]
    fn refuses_malformed_bodies() {
        assert!(parse("multipart/form-data", b"--x\r\n").is_none());
        assert!(parse("multipart/form-data; boundary=x", b"junk").is_none());
        assert!(parse("multipart/form-data; boundary=x", b"--x\r\nno headers end").is_none());
        let unterminated = b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue";
        assert!(parse("multipart/form-data; boundary=x", unterminated).is_none());
    }
}
