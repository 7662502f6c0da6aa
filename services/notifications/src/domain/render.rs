//! Templates rendered with minijinja, sandboxed for admin-edited text: HTML
//! bodies escape every value automatically, a fuel limit stops a template
//! that would loop forever, and a template may use only the variables it
//! declares plus the service's own ([`GLOBALS`]).

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// Variables the service supplies to every template.
pub const GLOBALS: [&str; 5] = [
    "recipient",
    "subject_user_id",
    "dashboard_url",
    "product_name",
    "locale",
];

/// Instructions one part may execute (a few hundred suffice for a mail).
pub const FUEL: u64 = 100_000;

/// Longest rendered part.
pub const MAX_RENDERED: usize = 256 * 1024;

/// A template's text in one locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub locale: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    pub locale: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

/// A problem in one part of one locale, with its line when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub locale: String,
    pub part: &'static str,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

const PARTS: [(&str, &str); 3] = [
    ("subject", "subject.txt"),
    ("text_body", "text_body.txt"),
    ("html_body", "html_body.html"),
];

fn part<'c>(content: &'c Content, name: &str) -> &'c str {
    match name {
        "subject" => &content.subject,
        "text_body" => &content.text_body,
        _ => &content.html_body,
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn error(locale: &str, part: &'static str, err: &minijinja::Error) -> TemplateError {
    let message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    TemplateError {
        locale: locale.to_owned(),
        part,
        line: err.line().unwrap_or(0),
        message,
    }
}

/// Every problem of a template: syntax errors, variables used but neither
/// declared nor global, and errors when rendered with sample values.
pub fn check(contents: &[Content], variables: &[String]) -> Vec<TemplateError> {
    let env = environment();
    let known: BTreeSet<&str> = variables
        .iter()
        .map(String::as_str)
        .chain(GLOBALS)
        .collect();
    let builtins: BTreeSet<String> = env.globals().map(|(name, _)| name.to_owned()).collect();
    let mut errors = Vec::new();
    for content in contents {
        for (name, file) in PARTS {
            let source = part(content, name);
            match env.template_from_named_str(file, source) {
                Err(e) => errors.push(error(&content.locale, name, &e)),
                Ok(template) => {
                    let mut unknown: Vec<String> = template
                        .undeclared_variables(false)
                        .into_iter()
                        .filter(|v| !known.contains(v.as_str()) && !builtins.contains(v))
                        .collect();
                    unknown.sort();
                    for v in unknown {
                        errors.push(TemplateError {
                            locale: content.locale.clone(),
                            part: name,
                            line: line_of(source, &v),
                            message: format!(
                                "uses `{v}`, which is not a declared variable (declare it in variables)"
                            ),
                        });
                    }
                }
            }
        }
        if errors.is_empty() {
            let samples = sample_values(variables, &content.locale);
            if let Err(e) = render(content, &samples) {
                errors.push(e);
            }
        }
    }
    errors
}

/// The first line mentioning `name`, for an undeclared variable.
fn line_of(source: &str, name: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(name))
        .map_or(0, |i| i + 1)
}

/// "[name]" for every declared variable and global (previews, checks).
pub fn sample_values(variables: &[String], locale: &str) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = variables
        .iter()
        .map(String::as_str)
        .chain(GLOBALS)
        .map(|v| (v.to_owned(), format!("[{v}]")))
        .collect();
    values.insert("locale".into(), locale.to_owned());
    values
}

/// Renders the three parts. The subject is one line (line breaks become
/// spaces); an empty HTML body stays empty.
pub fn render(
    content: &Content,
    values: &BTreeMap<String, String>,
) -> Result<Rendered, TemplateError> {
    let env = environment();
    let ctx = Value::from_pairs(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut out = Rendered {
        locale: content.locale.clone(),
        ..Rendered::default()
    };
    for (name, file) in PARTS {
        let source = part(content, name);
        if source.is_empty() {
            continue;
        }
        let rendered = env
            .template_from_named_str(file, source)
            .and_then(|t| t.render(ctx.clone()))
            .map_err(|e| error(&content.locale, name, &e))?;
        if rendered.len() > MAX_RENDERED {
            return Err(TemplateError {
                locale: content.locale.clone(),
                part: name,
                line: 0,
                message: format!("renders to more than {MAX_RENDERED} bytes"),
            });
        }
        match name {
            "subject" => {
                out.subject = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            "text_body" => out.text_body = rendered,
            _ => out.html_body = rendered,
        }
    }
    Ok(out)
}

/// The content for `requested` ("de-AT" falls back to "de"), else the
/// default locale's, else the first.
pub fn choose<'c>(contents: &'c [Content], requested: &str, default: &str) -> Option<&'c Content> {
    let language = requested.split(['-', '_']).next().unwrap_or_default();
    let by = |l: &str| {
        contents
            .iter()
            .find(|c| !l.is_empty() && c.locale.eq_ignore_ascii_case(l))
    };
    by(requested)
        .or_else(|| by(language))
        .or_else(|| by(default))
        .or_else(|| contents.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(subject: &str, text: &str, html: &str) -> Content {
        Content {
            locale: "en".into(),
            subject: subject.into(),
            text_body: text.into(),
            html_body: html.into(),
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn html_escapes_and_text_does_not() {
        let c = content(
            "Hello {{ name }}",
            "Hello {{ name }}",
            "<p>Hello {{ name }}</p>",
        );
        let out = render(&c, &vars(&[("name", "<b>Eve</b> & co")])).unwrap();
        assert_eq!(
            out.html_body,
            "<p>Hello &lt;b&gt;Eve&lt;&#x2f;b&gt; &amp; co</p>"
        );
        assert_eq!(out.text_body, "Hello <b>Eve</b> & co");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let c = content("ok", "line one\nline two\n{% if x %}never closed", "");
        let errors = check(&[c], &["x".into()]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].part, "text_body");
        assert_eq!(errors[0].line, 3);
        assert!(errors[0].message.contains("syntax error"), "{}", errors[0]);
    }

    #[test]
    fn undeclared_variables_are_refused() {
        let c = content("Hi {{ recipient }}", "{{ old_group }} -> {{ nope }}", "");
        let errors = check(&[c], &["old_group".into()]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("`nope`"));
        let ok = content(
            "{% for i in range(3) %}{{ i }}{% endfor %}",
            "{{ recipient }}",
            "",
        );
        assert!(check(&[ok], &[]).is_empty());
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let c = content(
            "x",
            "{% for a in range(10000) %}{% for b in range(10000) %}.{% endfor %}{% endfor %}",
            "",
        );
        let err = render(&c, &BTreeMap::new()).unwrap_err();
        assert_eq!(err.part, "text_body");
        assert!(err.message.contains("fuel"), "{err}");
    }

    #[test]
    fn subject_is_one_line() {
        let c = content("Hello\n  {{ recipient }}\n", "t", "");
        let out = render(&c, &vars(&[("recipient", "a@b.c")])).unwrap();
        assert_eq!(out.subject, "Hello a@b.c");
    }

    #[test]
    fn locale_falls_back() {
        let mut de = content("Hallo", "", "");
        de.locale = "de".into();
        let en = content("Hello", "", "");
        let all = [en, de];
        assert_eq!(choose(&all, "de-AT", "en").unwrap().subject, "Hallo");
        assert_eq!(choose(&all, "fr", "en").unwrap().subject, "Hello");
        assert_eq!(choose(&all, "", "de").unwrap().subject, "Hallo");
    }
}
