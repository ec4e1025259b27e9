//! The WebSocket Origin check against cross-site WebSocket hijacking: a browser page from
//! another site must not open a session with the user's cookies or network position.
//! Requests without `Origin` (non-browser clients) and same-origin pages are allowed;
//! other origins must match the allow-list (`*` alone allows all; a `:*` port suffix
//! allows any port).

/// True when a WebSocket upgrade with this `Origin` may proceed.
pub fn allowed(origin: Option<&str>, host: Option<&str>, allow: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim().trim_end_matches('/');
    if let (Some(host), Some((_, origin_host))) = (host, origin.split_once("://"))
        && origin_host.eq_ignore_ascii_case(host)
    {
        return true;
    }
    allow.iter().any(|a| {
        let a = a.trim().trim_end_matches('/');
        if a == "*" {
            return true;
        }
        match a.strip_suffix(":*") {
            Some(prefix) => {
                origin.eq_ignore_ascii_case(prefix)
                    || origin
                        .strip_prefix(prefix)
                        .and_then(|rest| rest.strip_prefix(':'))
                        .is_some_and(|port| {
                            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                        })
            }
            None => origin.eq_ignore_ascii_case(a),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn decisions() {
        let local = list(&["http://localhost:*", "https://app.example"]);
        assert!(allowed(None, Some("x"), &local));
        assert!(allowed(
            Some("http://localhost:3000"),
            Some("gw:8080"),
            &local
        ));
        assert!(allowed(Some("http://localhost"), Some("gw:8080"), &local));
        assert!(allowed(Some("https://app.example"), Some("gw"), &local));
        assert!(allowed(
            Some("https://gw.example:8443"),
            Some("gw.example:8443"),
            &local
        ));
        assert!(!allowed(
            Some("https://evil.example"),
            Some("gw:8080"),
            &local
        ));
        assert!(!allowed(
            Some("http://localhost.evil.example"),
            Some("gw"),
            &local
        ));
        assert!(!allowed(Some("http://localhost:80x"), Some("gw"), &local));
        assert!(allowed(Some("https://any.where"), None, &list(&["*"])));
    }
}
