//! Route templates: destination templates and SEND patterns (`/`-separated segments, each
//! a literal id or one placeholder) and SEND record key templates, parsed and checked at
//! startup so a bad one stops the gateway with a message naming it.

use crate::destination::{Shape, valid_market_id};
use thiserror::Error;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Literal(String),
    /// `{key}`: the record key (inbound).
    Key,
    /// `{json.<field>}`: a top-level field of the record value (inbound).
    Json(String),
    /// `{<name>}`: a segment of a SEND pattern, or its value in a key template.
    Var(String),
}

/// Why a template was refused at startup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("must start with '/'")]
    NoLeadingSlash,
    #[error("has an empty path segment ('//' or a trailing '/')")]
    EmptySegment,
    #[error("has '{{' without a closing '}}' (a placeholder is written {{name}})")]
    Unclosed,
    #[error("has '}}' without an opening '{{'")]
    StrayClose,
    #[error("placeholder '{{{0}}}' must be a whole path segment (between '/')")]
    NotWholeSegment(String),
    #[error("unknown placeholder '{{{0}}}': {1}")]
    Unknown(String, String),
    #[error("placeholder '{{{0}}}' appears twice")]
    Duplicate(String),
    #[error("segment '{0}' may hold only letters, digits, '-', '_', '.'")]
    BadLiteral(String),
    #[error("is empty")]
    Empty,
}

/// What a placeholder may name, for the parser and its messages.
enum Names<'a> {
    /// Inbound destinations: `{key}` and `{json.<field>}`.
    Record,
    /// SEND patterns: any name of letters, digits, `_`, `-`.
    Free,
    /// Key templates: the placeholders of the route's pattern.
    Of(&'a [String]),
}

fn placeholder(name: &str, names: &Names<'_>) -> Result<Part, TemplateError> {
    let ident = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    let unknown = |hint: String| Err(TemplateError::Unknown(name.to_string(), hint));
    match names {
        Names::Record if name == "key" => Ok(Part::Key),
        Names::Record => match name.strip_prefix("json.") {
            Some(field) if ident(field) => Ok(Part::Json(field.to_string())),
            _ => unknown("use {key} (the record key) or {json.<field>} (a top-level field of the JSON value)".into()),
        },
        Names::Free if ident(name) => Ok(Part::Var(name.to_string())),
        Names::Free => unknown("a placeholder name is letters, digits, '_' or '-'".into()),
        Names::Of(vars) if vars.iter().any(|v| v == name) => Ok(Part::Var(name.to_string())),
        Names::Of([]) => {
            unknown("the destination pattern has no placeholders".into())
        }
        Names::Of(vars) => unknown(format!(
            "the destination pattern defines {}",
            vars.iter()
                .map(|v| format!("{{{v}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Splits text into literals and placeholders.
fn parts(text: &str, names: &Names<'_>) -> Result<Vec<Part>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let open = rest.find('{');
        let close = rest.find('}');
        match (open, close) {
            (_, Some(c)) if open.is_none_or(|o| c < o) => return Err(TemplateError::StrayClose),
            (Some(o), Some(c)) => {
                if o > 0 {
                    out.push(Part::Literal(rest[..o].to_string()));
                }
                let name = &rest[o + 1..c];
                if name.contains('{') {
                    return Err(TemplateError::Unclosed);
                }
                out.push(placeholder(name, names)?);
                rest = &rest[c + 1..];
            }
            (Some(_), None) => return Err(TemplateError::Unclosed),
            (None, _) => {
                out.push(Part::Literal(rest.to_string()));
                rest = "";
            }
        }
    }
    Ok(out)
}

/// A destination template or pattern: `/`-separated segments, each a literal id or one
/// placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Part>,
}

impl Template {
    fn parse(text: &str, names: &Names<'_>) -> Result<Template, TemplateError> {
        let rest = text
            .strip_prefix('/')
            .ok_or(TemplateError::NoLeadingSlash)?;
        let mut segments = Vec::new();
        for seg in rest.split('/') {
            if seg.is_empty() {
                return Err(TemplateError::EmptySegment);
            }
            let mut p = parts(seg, names)?;
            match p.as_slice() {
                [Part::Literal(l)] if !valid_market_id(l) => {
                    return Err(TemplateError::BadLiteral(l.clone()));
                }
                [_] => segments.push(p.remove(0)),
                _ => {
                    let name = p
                        .iter()
                        .find_map(|x| match x {
                            Part::Literal(_) => None,
                            Part::Key => Some("key".to_string()),
                            Part::Json(f) => Some(format!("json.{f}")),
                            Part::Var(v) => Some(v.clone()),
                        })
                        .unwrap_or_default();
                    return Err(TemplateError::NotWholeSegment(name));
                }
            }
        }
        Ok(Template { segments })
    }

    /// An inbound destination template (`{key}`, `{json.<field>}`).
    pub fn inbound(text: &str) -> Result<Template, TemplateError> {
        Template::parse(text, &Names::Record)
    }

    /// A SEND destination pattern (`/app/order/{market}`); each name at most once.
    pub fn send_pattern(text: &str) -> Result<Template, TemplateError> {
        let t = Template::parse(text, &Names::Free)?;
        let vars = t.vars();
        if let Some((_, v)) = vars
            .iter()
            .enumerate()
            .find(|(i, v)| vars[..*i].contains(v))
        {
            return Err(TemplateError::Duplicate(v.clone()));
        }
        Ok(t)
    }

    /// The names of the `{name}` placeholders, in order.
    pub fn vars(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// The destinations this template yields, for subscription checks.
    pub fn shape(&self) -> Shape {
        Shape::new(
            self.segments
                .iter()
                .map(|p| match p {
                    Part::Literal(l) => Some(l.clone()),
                    _ => None,
                })
                .collect(),
        )
    }

    /// The value of each `{name}` if `destination` matches this pattern (ids only).
    pub fn capture(&self, destination: &str) -> Option<Vec<(&str, String)>> {
        let segs: Vec<&str> = destination.strip_prefix('/')?.split('/').collect();
        if segs.len() != self.segments.len() {
            return None;
        }
        let mut vars = Vec::new();
        for (s, p) in segs.iter().zip(&self.segments) {
            match p {
                Part::Literal(l) if l == s => {}
                Part::Var(name) if valid_market_id(s) => vars.push((name.as_str(), s.to_string())),
                _ => return None,
            }
        }
        Some(vars)
    }
}

/// A record key template of a SEND route: text and `{name}`s of the route's pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate(Vec<Part>);

impl KeyTemplate {
    pub fn parse(text: &str, vars: &[String]) -> Result<KeyTemplate, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        parts(text, &Names::Of(vars)).map(KeyTemplate)
    }

    /// The key for the placeholders a destination matched.
    pub fn expand(&self, vars: &[(&str, String)]) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Var(name) => {
                    if let Some((_, v)) = vars.iter().find(|(n, _)| n == name) {
                        out.push_str(v);
                    }
                }
                Part::Key | Part::Json(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_templates_parse_into_segments() {
        let t = Template::inbound("/topic/market/{key}").unwrap();
        assert_eq!(
            t.segments,
            [
                Part::Literal("topic".into()),
                Part::Literal("market".into()),
                Part::Key
            ]
        );
        let t = Template::inbound("/topic/{json.exchange}/{key}").unwrap();
        assert_eq!(t.segments[1], Part::Json("exchange".into()));
        assert!(t.shape().admits("/topic/upbit/KRW-BTC"));
        assert!(t.shape().admits("/topic/upbit/*"));
        assert!(!t.shape().admits("/topic/upbit"));
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let err = |t: &str| Template::inbound(t).unwrap_err().to_string();
        assert_eq!(
            err("/topic/{nope}"),
            "unknown placeholder '{nope}': use {key} (the record key) or {json.<field>} (a top-level field of the JSON value)"
        );
        assert!(err("/topic/{json.}").contains("'{json.}'"));
        assert!(err("/topic/{key").contains("without a closing"));
        assert!(err("/topic/key}").contains("without an opening"));
        assert!(err("topic/{key}").contains("start with '/'"));
        assert!(err("/topic//{key}").contains("empty path segment"));
        assert!(err("/topic/{key}/").contains("empty path segment"));
        assert!(err("/topic/m-{key}").contains("'{key}' must be a whole path segment"));
        assert!(err("/topic/a b/{key}").contains("segment 'a b'"));
        let e = Template::send_pattern("/app/{a}/{a}").unwrap_err();
        assert_eq!(e, TemplateError::Duplicate("a".into()));
    }

    #[test]
    fn key_templates_use_the_pattern_placeholders() {
        let vars = ["market".to_string(), "side".to_string()];
        assert!(KeyTemplate::parse("{market}:{side}", &vars).is_ok());
        let e = KeyTemplate::parse("{user}", &vars).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown placeholder '{user}': the destination pattern defines {market}, {side}"
        );
        let e = KeyTemplate::parse("{x}", &[]).unwrap_err().to_string();
        assert!(e.contains("has no placeholders"), "{e}");
        assert_eq!(KeyTemplate::parse("", &vars), Err(TemplateError::Empty));
    }
}
