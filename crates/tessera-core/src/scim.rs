//! SCIM 2.0 filters (RFC 7644 §3.4.2.2) and attribute paths (§3.5.2), without I/O: the
//! provisioning endpoints parse what IdPs send here and evaluate it over a resource's
//! attributes. By hand: no maintained Rust crate parses SCIM filters.
//!
//! Supported: `eq ne co sw ew pr gt ge lt le`, `and`, `or`, `not (…)`, parentheses,
//! complex attribute filters (`emails[type eq "work"]`), sub-attributes
//! (`emails.value`, `name.givenName`), string, boolean and null values. Attribute names
//! and operators are case-insensitive; string comparisons are too (the attributes IdPs
//! filter on are not case-exact). Bounded: a filter longer than [`MAX_FILTER`] bytes or
//! nested deeper than [`MAX_DEPTH`] is refused.

use std::fmt;

/// The longest filter read.
pub const MAX_FILTER: usize = 4096;
/// The deepest nesting of parentheses, `not` and brackets.
pub const MAX_DEPTH: usize = 16;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal in a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Bool(bool),
    Null,
    Number(String),
}

/// An attribute path: `name`, `name.sub`, or `name[filter].sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Lower case.
    pub attr: String,
    pub filter: Option<Box<Filter>>,
    /// Lower case.
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attr)?;
        if self.filter.is_some() {
            f.write_str("[…]")?;
        }
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare(AttrPath, Op, Literal),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

/// Why a filter or path could not be read (SCIM `invalidFilter` / `invalidPath`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    LBracket,
    RBracket,
}

fn tokens(s: &str) -> Result<Vec<Tok>, ParseError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '[' => {
                chars.next();
                out.push(Tok::LBracket);
            }
            ']' => {
                chars.next();
                out.push(Tok::RBracket);
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => v.push('\n'),
                            Some((_, 't')) => v.push('\t'),
                            Some((_, c)) => v.push(c),
                            None => break,
                        },
                        c => v.push(c),
                    }
                }
                if !closed {
                    return Err(ParseError(format!(
                        "the string starting at character {} is not closed",
                        i + 1
                    )));
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let mut w = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || "()[]\"".contains(c) {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError(format!(
                "the filter is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.next();
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.next();
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ParseError> {
        if self.keyword("not") {
            self.next();
            self.deeper()?;
            if self.next() != Some(Tok::Open) {
                return Err(ParseError("'not' must be followed by '('".into()));
            }
            let inner = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err(ParseError("a ')' is missing".into()));
            }
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.next();
            self.deeper()?;
            let inner = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err(ParseError("a ')' is missing".into()));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        let path = self.path()?;
        // `emails[type eq "work"]` alone: some element matches.
        let ends = matches!(self.peek(), None | Some(Tok::Close) | Some(Tok::RBracket))
            || self.keyword("and")
            || self.keyword("or");
        if path.filter.is_some() && path.sub.is_none() && ends {
            return Ok(Filter::Present(path));
        }
        let op = match self.next() {
            Some(Tok::Word(w)) => w.to_ascii_lowercase(),
            _ => return Err(ParseError(format!("an operator must follow '{path}'"))),
        };
        if op == "pr" {
            return Ok(Filter::Present(path));
        }
        let op = match op.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => {
                return Err(ParseError(format!(
                    "'{}' is not a SCIM operator (eq ne co sw ew pr gt ge lt le)",
                    crate::text::clip(other)
                )));
            }
        };
        let value = match self.next() {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Literal::Null,
            Some(Tok::Word(w))
                if !w.is_empty()
                    && w.chars().all(|c| c.is_ascii_digit() || ".-+eE".contains(c)) =>
            {
                Literal::Number(w)
            }
            _ => {
                return Err(ParseError(format!(
                    "a value (a \"string\", true, false, null or a number) must follow the operator after '{path}'"
                )));
            }
        };
        Ok(Filter::Compare(path, op, value))
    }

    fn path(&mut self) -> Result<AttrPath, ParseError> {
        let word = match self.next() {
            Some(Tok::Word(w)) => w,
            _ => return Err(ParseError("an attribute name is expected".into())),
        };
        let (attr, sub) = split_name(&word)?;
        if sub.is_none() && self.peek() == Some(&Tok::LBracket) {
            self.next();
            self.deeper()?;
            let inner = self.or()?;
            if self.next() != Some(Tok::RBracket) {
                return Err(ParseError("a ']' is missing".into()));
            }
            self.depth -= 1;
            // `emails[type eq "work"].value`: the sub-attribute follows the bracket.
            let sub = match self.peek() {
                Some(Tok::Word(w)) if w.starts_with('.') => {
                    let w = w.clone();
                    self.next();
                    Some(check_name(&w[1..])?.to_ascii_lowercase())
                }
                _ => None,
            };
            return Ok(AttrPath {
                attr,
                filter: Some(Box::new(inner)),
                sub,
            });
        }
        Ok(AttrPath {
            attr,
            filter: None,
            sub,
        })
    }
}

fn check_name(n: &str) -> Result<&str, ParseError> {
    if n.is_empty()
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-$".contains(c))
    {
        return Err(ParseError(format!(
            "'{}' is not an attribute name",
            crate::text::clip(n)
        )));
    }
    Ok(n)
}

/// `name` or `name.sub`, a schema URN prefix removed (`urn:…:User:userName`).
fn split_name(word: &str) -> Result<(String, Option<String>), ParseError> {
    let word = match word.rfind(':') {
        Some(i) if word.to_ascii_lowercase().starts_with("urn:") => &word[i + 1..],
        _ => word,
    };
    let (a, s) = match word.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (word, None),
    };
    Ok((
        check_name(a)?.to_ascii_lowercase(),
        s.map(|s| check_name(s).map(str::to_ascii_lowercase))
            .transpose()?,
    ))
}

/// Parses a filter (`userName eq "alice"`).
pub fn parse_filter(s: &str) -> Result<Filter, ParseError> {
    if s.len() > MAX_FILTER {
        return Err(ParseError(format!(
            "the filter is longer than {MAX_FILTER} bytes"
        )));
    }
    let mut p = Parser {
        toks: tokens(s)?,
        at: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.at != p.toks.len() {
        return Err(ParseError(
            "the filter goes on after a complete expression".into(),
        ));
    }
    Ok(f)
}

/// Parses a PATCH path (`active`, `emails[type eq "work"].value`, `members[value eq "x"]`).
pub fn parse_path(s: &str) -> Result<AttrPath, ParseError> {
    if s.len() > MAX_FILTER {
        return Err(ParseError(format!(
            "the path is longer than {MAX_FILTER} bytes"
        )));
    }
    let mut p = Parser {
        toks: tokens(s)?,
        at: 0,
        depth: 0,
    };
    let path = p.path()?;
    if p.at != p.toks.len() {
        return Err(ParseError("the path goes on after the attribute".into()));
    }
    Ok(path)
}

/// A value of a resource's attribute, as a filter compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Bool(bool),
}

/// A resource as filters see it: the values at a path (several for a multi-valued
/// attribute), and the sub-resources of a multi-valued complex attribute (each email).
pub trait Resource {
    /// Values of `attr` (and `sub`), lower-case names.
    fn values(&self, attr: &str, sub: Option<&str>) -> Vec<Value>;
    /// The elements of a multi-valued complex attribute (`emails`), each a resource of its
    /// sub-attributes.
    fn elements(&self, attr: &str) -> Vec<Box<dyn Resource + '_>>;
}

fn compare(v: &Value, op: Op, lit: &Literal) -> bool {
    match (v, lit) {
        (Value::Str(a), Literal::Str(b)) => {
            let (a, b) = (a.to_lowercase(), b.to_lowercase());
            match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                Op::Co => a.contains(&b),
                Op::Sw => a.starts_with(&b),
                Op::Ew => a.ends_with(&b),
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Lt => a < b,
                Op::Le => a <= b,
            }
        }
        (Value::Bool(a), Literal::Bool(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        // Entra ID sends booleans as strings ("False").
        (Value::Bool(_), Literal::Str(b)) => match b.to_ascii_lowercase().as_str() {
            "true" => compare(v, op, &Literal::Bool(true)),
            "false" => compare(v, op, &Literal::Bool(false)),
            _ => false,
        },
        _ => false,
    }
}

/// Whether `r` matches `f`.
pub fn matches(f: &Filter, r: &dyn Resource) -> bool {
    match f {
        Filter::And(a, b) => matches(a, r) && matches(b, r),
        Filter::Or(a, b) => matches(a, r) || matches(b, r),
        Filter::Not(a) => !matches(a, r),
        Filter::Present(p) => !path_values(p, r).is_empty(),
        Filter::Compare(p, op, Literal::Null) => {
            let none = path_values(p, r).is_empty();
            match op {
                Op::Eq => none,
                Op::Ne => !none,
                _ => false,
            }
        }
        Filter::Compare(p, op, lit) => {
            let values = path_values(p, r);
            if *op == Op::Ne {
                return values.iter().all(|v| compare(v, Op::Ne, lit));
            }
            values.iter().any(|v| compare(v, *op, lit))
        }
    }
}

fn path_values(p: &AttrPath, r: &dyn Resource) -> Vec<Value> {
    match &p.filter {
        None => r.values(&p.attr, p.sub.as_deref()),
        Some(inner) => r
            .elements(&p.attr)
            .into_iter()
            .filter(|e| matches(inner, e.as_ref()))
            .flat_map(|e| e.values(p.sub.as_deref().unwrap_or("value"), None))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Email(&'static str, &'static str);
    struct Person {
        user_name: &'static str,
        active: bool,
        emails: Vec<Email>,
    }

    impl Resource for Email {
        fn values(&self, attr: &str, _: Option<&str>) -> Vec<Value> {
            match attr {
                "value" => vec![Value::Str(self.0.into())],
                "type" => vec![Value::Str(self.1.into())],
                _ => vec![],
            }
        }
        fn elements(&self, _: &str) -> Vec<Box<dyn Resource + '_>> {
            vec![]
        }
    }

    impl Resource for Person {
        fn values(&self, attr: &str, sub: Option<&str>) -> Vec<Value> {
            match (attr, sub) {
                ("username", None) => vec![Value::Str(self.user_name.into())],
                ("active", None) => vec![Value::Bool(self.active)],
                ("emails", Some("value")) | ("emails", None) => {
                    self.emails.iter().map(|e| Value::Str(e.0.into())).collect()
                }
                _ => vec![],
            }
        }
        fn elements(&self, attr: &str) -> Vec<Box<dyn Resource + '_>> {
            match attr {
                "emails" => self
                    .emails
                    .iter()
                    .map(|e| Box::new(Email(e.0, e.1)) as Box<dyn Resource>)
                    .collect(),
                _ => vec![],
            }
        }
    }

    fn alice() -> Person {
        Person {
            user_name: "Alice@Example.com",
            active: true,
            emails: vec![
                Email("alice@example.com", "work"),
                Email("al@home.example", "home"),
            ],
        }
    }

    #[test]
    fn what_idps_send_matches_as_they_mean_it() {
        let a = alice();
        for (f, want) in [
            ("userName eq \"alice@example.com\"", true),
            ("USERNAME EQ \"ALICE@EXAMPLE.COM\"", true),
            ("userName eq \"bob@example.com\"", false),
            ("emails.value eq \"al@home.example\"", true),
            (
                "emails[type eq \"work\"].value eq \"alice@example.com\"",
                true,
            ),
            (
                "emails[type eq \"work\"].value eq \"al@home.example\"",
                false,
            ),
            ("emails[type eq \"work\" and value co \"alice\"]", true),
            ("userName sw \"alice\" and active eq true", true),
            ("userName sw \"bob\" or active eq false", false),
            ("not (userName sw \"bob\")", true),
            (
                "(userName sw \"bob\" or userName ew \".com\") and active pr",
                true,
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"alice@example.com\"",
                true,
            ),
            ("active eq \"False\"", false),
            ("externalId pr", false),
            ("externalId eq null", true),
            ("userName ne \"bob\"", true),
        ] {
            let parsed = parse_filter(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(matches(&parsed, &a), want, "{f}");
        }
    }

    #[test]
    fn bad_filters_say_why_and_are_bounded() {
        for (f, why) in [
            ("userName eq", "value"),
            ("userName zz \"x\"", "operator"),
            ("userName eq \"x", "not closed"),
            ("(userName eq \"x\"", "')'"),
            ("userName eq \"x\" extra", "goes on"),
            ("not userName eq \"x\"", "'('"),
            ("emails[type eq \"work\"", "']'"),
        ] {
            let e = parse_filter(f).unwrap_err();
            assert!(e.0.contains(why), "{f}: {e}");
        }
        let deep = format!("{}userName eq \"x\"{}", "(".repeat(40), ")".repeat(40));
        assert!(parse_filter(&deep).unwrap_err().0.contains("deeper"));
        assert!(parse_filter(&"a".repeat(MAX_FILTER + 1)).is_err());
    }

    #[test]
    fn patch_paths() {
        let p = parse_path("emails[type eq \"work\"].value").unwrap();
        assert_eq!(
            (p.attr.as_str(), p.sub.as_deref()),
            ("emails", Some("value"))
        );
        assert!(p.filter.is_some());
        let p = parse_path("members[value eq \"usr_1\"]").unwrap();
        assert_eq!(p.attr, "members");
        let p = parse_path("name.givenName").unwrap();
        assert_eq!(p.sub.as_deref(), Some("givenname"));
        assert!(parse_path("active extra").is_err());
    }
}
