//! Name templates: `{symbol}@kline_{interval}` filled from named values.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed template: literal text with `{name}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(String),
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("unclosed `{{` at byte {0}")]
    Unclosed(usize),
    /// A `}` without its `{`.
    #[error("unmatched `}}` at byte {0}")]
    Unmatched(usize),
    /// A placeholder name outside `[a-z_][a-z0-9_]*`.
    #[error("bad placeholder name `{0}` (use lowercase letters, digits and `_`)")]
    BadName(String),
}

impl Template {
    /// Parses `text`; placeholders are `{name}` with `name` in `[a-z_][a-z0-9_]*`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' => {
                    let rest = &text[at + 1..];
                    let end = rest.find('}').ok_or(TemplateError::Unclosed(at))?;
                    let name = &rest[..end];
                    if !is_var_name(name) {
                        return Err(TemplateError::BadName(name.to_string()));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(name.to_string()));
                    for _ in 0..=end {
                        chars.next();
                    }
                }
                '}' => return Err(TemplateError::Unmatched(at)),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The placeholder names, in order of appearance (repeats included).
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// True when the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.vars().next().is_none()
    }

    /// Fills the placeholders; `None` names the first placeholder `lookup` has no value for.
    pub fn render<'a>(&'a self, lookup: impl Fn(&str) -> Option<&'a str>) -> Result<String, &'a str>
    where
        Self: 'a,
    {
        let mut out = String::with_capacity(32);
        self.render_into(&mut out, lookup)?;
        Ok(out)
    }

    /// Like [`render`](Self::render), appending to `out`.
    pub fn render_into<'a, 'v>(
        &'a self,
        out: &mut String,
        lookup: impl Fn(&str) -> Option<&'v str>,
    ) -> Result<(), &'a str> {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Var(name) => out.push_str(lookup(name).ok_or(name.as_str())?),
            }
        }
        Ok(())
    }

    /// The placeholder values that make the template render `text`, if any; a placeholder
    /// matches any text, the first match found from the left wins.
    pub fn captures<'t>(&self, text: &'t str) -> Option<Vec<(&str, &'t str)>> {
        let mut found = Vec::new();
        capture(&self.parts, text, &mut found).then_some(found)
    }

    /// Every name the template yields over the cross product of `values`. A placeholder takes
    /// one value per name however often it appears (as names are read back), and a template
    /// that would yield more than [`MAX_NAMES`] is refused before any name is built.
    pub fn expand(
        &self,
        values: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<String>, ExpandError> {
        let vars: Vec<&str> = self.vars().fold(Vec::new(), |mut seen, var| {
            if !seen.contains(&var) {
                seen.push(var);
            }
            seen
        });
        let options = vars
            .iter()
            .map(|var| {
                values
                    .get(*var)
                    .ok_or_else(|| ExpandError::Missing(var.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let count = options.iter().fold(1u128, |count, values| {
            count.saturating_mul(values.len() as u128)
        });
        if count > MAX_NAMES as u128 {
            return Err(ExpandError::TooMany(count));
        }
        let mut names = Vec::with_capacity(count as usize);
        if count == 0 {
            return Ok(names);
        }
        // An odometer over the placeholders' values, the last one turning fastest.
        let mut choice = vec![0usize; vars.len()];
        loop {
            let mut name = String::new();
            for part in &self.parts {
                match part {
                    Part::Literal(text) => name.push_str(text),
                    Part::Var(var) => {
                        let at = vars.iter().position(|v| v == var).expect("collected above");
                        name.push_str(&options[at][choice[at]]);
                    }
                }
            }
            names.push(name);
            let mut wheel = vars.len();
            loop {
                if wheel == 0 {
                    return Ok(names);
                }
                wheel -= 1;
                choice[wheel] += 1;
                if choice[wheel] < options[wheel].len() {
                    break;
                }
                choice[wheel] = 0;
            }
        }
    }
}

/// The most stream names one topic template may expand to.
pub const MAX_NAMES: usize = 100_000;

/// Why a template could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A placeholder with no values.
    #[error("placeholder `{{{0}}}` has no values in `vars`")]
    Missing(String),
    /// More names than [`MAX_NAMES`].
    #[error("expands to {0} stream names; a topic may have at most {MAX_NAMES}")]
    TooMany(u128),
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Literal(text) => f.write_str(text)?,
                Part::Var(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

fn capture<'p, 't>(parts: &'p [Part], text: &'t str, found: &mut Vec<(&'p str, &'t str)>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return text.is_empty();
    };
    match first {
        Part::Literal(literal) => text
            .strip_prefix(literal.as_str())
            .is_some_and(|after| capture(rest, after, found)),
        Part::Var(name) => {
            // A repeated placeholder must match the value it took before.
            if let Some(&(_, value)) = found.iter().find(|(n, _)| n == name) {
                return text
                    .strip_prefix(value)
                    .is_some_and(|after| capture(rest, after, found));
            }
            for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                found.push((name.as_str(), &text[..end]));
                if capture(rest, &text[end..], found) {
                    return true;
                }
                found.pop();
            }
            false
        }
    }
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_placeholders() {
        let t = Template::parse("{symbol}@kline_{interval}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["symbol", "interval"]);
        let got = t.render(|n| match n {
            "symbol" => Some("btcusdt"),
            "interval" => Some("1m"),
            _ => None,
        });
        assert_eq!(got.unwrap(), "btcusdt@kline_1m");
        assert_eq!(t.to_string(), "{symbol}@kline_{interval}");
    }

    #[test]
    fn render_names_the_missing_placeholder() {
        let t = Template::parse("{symbol}@depth{speed}").unwrap();
        let got = t.render(|n| (n == "symbol").then_some("btcusdt"));
        assert_eq!(got, Err("speed"));
    }

    #[test]
    fn rejects_malformed_templates() {
        assert_eq!(
            Template::parse("{symbol@trade"),
            Err(TemplateError::Unclosed(0))
        );
        assert_eq!(Template::parse("a}b"), Err(TemplateError::Unmatched(1)));
        assert!(matches!(
            Template::parse("{Sym}@x"),
            Err(TemplateError::BadName(_))
        ));
        assert!(matches!(
            Template::parse("{}@x"),
            Err(TemplateError::BadName(_))
        ));
    }

    #[test]
    fn captures_the_values_that_render_a_name() {
        let t = Template::parse("{symbol}@kline_{interval}").unwrap();
        assert_eq!(
            t.captures("btcusdt@kline_1m"),
            Some(vec![("symbol", "btcusdt"), ("interval", "1m")])
        );
        assert_eq!(t.captures("btcusdt@trade"), None);
        let depth = Template::parse("{symbol}@depth{speed}").unwrap();
        assert_eq!(
            depth.captures("btcusdt@depth@100ms"),
            Some(vec![("symbol", "btcusdt"), ("speed", "@100ms")])
        );
        let literal = Template::parse("!miniTicker@arr").unwrap();
        assert_eq!(literal.captures("!miniTicker@arr"), Some(vec![]));
        assert_eq!(literal.captures("!miniTicker@arrx"), None);
        let twice = Template::parse("{a}.{a}").unwrap();
        assert_eq!(twice.captures("x.x"), Some(vec![("a", "x")]));
        assert_eq!(twice.captures("x.y"), None);
    }

    #[test]
    fn a_repeated_placeholder_takes_one_value_and_huge_products_are_refused() {
        let values: BTreeMap<String, Vec<String>> =
            [("a".to_string(), (0..10).map(|i| i.to_string()).collect())].into();
        let twice = Template::parse("{a}x{a}").unwrap();
        assert_eq!(twice.expand(&values).unwrap().len(), 10);
        assert_eq!(twice.expand(&values).unwrap()[3], "3x3");
        let mut many = values.clone();
        for var in ["b", "c", "d", "e", "f"] {
            many.insert(var.to_string(), values["a"].clone());
        }
        let wide = Template::parse("{a}{b}{c}{d}{e}{f}").unwrap();
        assert_eq!(wide.expand(&many), Err(ExpandError::TooMany(1_000_000)));
        assert_eq!(
            Template::parse("{zz}").unwrap().expand(&values),
            Err(ExpandError::Missing("zz".into()))
        );
    }

    #[test]
    fn expands_over_the_cross_product() {
        let t = Template::parse("{symbol}@depth{speed}").unwrap();
        let mut values = BTreeMap::new();
        values.insert("symbol".into(), vec!["a".into(), "b".into()]);
        values.insert("speed".into(), vec!["".into(), "@100ms".into()]);
        assert_eq!(
            t.expand(&values).unwrap(),
            ["a@depth", "a@depth@100ms", "b@depth", "b@depth@100ms"]
        );
        values.remove("speed");
        assert_eq!(t.expand(&values), Err(ExpandError::Missing("speed".into())));
    }
}
