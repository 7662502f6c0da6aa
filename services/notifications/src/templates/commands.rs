//! Template use cases: create, update (a new version), read, list, preview.

use std::collections::BTreeMap;

use diesel_async::AsyncPgConnection;
use steward_kit::{FieldViolations, Tx};

use super::store::{self, Header, HeaderFields};
use crate::{
    domain::render::{self, Content, Rendered, TemplateError},
    error::{self, Error},
};

/// A template at one version.
#[derive(Debug, Clone)]
pub struct Template {
    pub header: Header,
    pub version: i32,
    pub contents: Vec<Content>,
    pub author_user_id: String,
}

/// A template as written by an admin (or seeded), its shape validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub template_id: String,
    pub category: String,
    pub description: String,
    pub default_locale: String,
    pub variables: Vec<String>,
    pub contents: Vec<Content>,
}

impl Draft {
    pub(crate) fn header(&self) -> HeaderFields<'_> {
        HeaderFields {
            template_id: &self.template_id,
            category: &self.category,
            description: &self.description,
            default_locale: &self.default_locale,
            variables: &self.variables,
        }
    }
}

/// The masked fields of an update; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub category: Option<String>,
    pub description: Option<String>,
    pub default_locale: Option<String>,
    pub variables: Option<Vec<String>>,
    pub contents: Option<Vec<Content>>,
}

/// Problems of the template text, as field violations naming the part
/// (`template.contents[1].html_body`) and the line.
pub fn check(draft: &Draft) -> Result<(), FieldViolations> {
    let mut v = FieldViolations::new();
    if !draft
        .contents
        .iter()
        .any(|c| c.locale == draft.default_locale)
    {
        v.add(
            "template.default_locale",
            "must be the locale of one of the contents",
        );
    }
    for e in render::check(&draft.contents, &draft.variables) {
        let index = draft
            .contents
            .iter()
            .position(|c| c.locale == e.locale)
            .unwrap_or(0);
        v.add(
            format!("template.contents[{index}].{}", e.part),
            e.to_string(),
        );
    }
    v.check()
}

pub async fn create(tx: &mut Tx<'_>, author: &str, draft: Draft) -> Result<Template, Error> {
    check(&draft)?;
    store::insert_header(tx.conn, &draft.header(), false, false).await?;
    store::insert_version(tx.conn, &draft.template_id, 1, &draft.contents, author).await?;
    tx.note(|r| {
        r.comment("template_id", draft.template_id.clone())
            .comment("version", "1")
    });
    get(tx.conn, &draft.template_id, None).await
}

pub async fn update(
    tx: &mut Tx<'_>,
    author: &str,
    template_id: &str,
    changes: Changes,
) -> Result<Template, Error> {
    let current = store::header(tx.conn, template_id, true)
        .await?
        .ok_or_else(|| error::template_not_found(template_id))?;
    let contents = match changes.contents {
        Some(c) => c,
        None => {
            let key = (current.template_id.clone(), current.current_version);
            store::versions(tx.conn, &[key])
                .await?
                .pop()
                .unwrap_or_default()
                .contents
        }
    };
    let draft = Draft {
        template_id: template_id.to_owned(),
        category: changes.category.unwrap_or(current.category),
        description: changes.description.unwrap_or(current.description),
        default_locale: changes.default_locale.unwrap_or(current.default_locale),
        variables: changes.variables.unwrap_or(current.variables),
        contents,
    };
    check(&draft)?;
    let version = current.current_version + 1;
    store::insert_version(tx.conn, template_id, version, &draft.contents, author).await?;
    store::update_header(tx.conn, &draft.header(), version).await?;
    tx.note(|r| {
        r.comment("template_id", template_id.to_owned())
            .comment("version", version.to_string())
    });
    get(tx.conn, template_id, None).await
}

/// The template at `version` (`None`: current).
pub async fn get(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    version: Option<i32>,
) -> Result<Template, Error> {
    let header = store::header(conn, template_id, false)
        .await?
        .ok_or_else(|| error::template_not_found(template_id))?;
    let version = version.unwrap_or(header.current_version);
    let found = store::versions(conn, &[(header.template_id.clone(), version)])
        .await?
        .pop()
        .unwrap_or_default();
    if found.contents.is_empty() {
        return Err(error::template_not_found(format!(
            "{template_id} version {version}"
        )));
    }
    Ok(Template {
        header,
        version,
        contents: found.contents,
        author_user_id: found.author_user_id,
    })
}

/// Templates by id at their current versions (two queries a page).
pub async fn list(
    conn: &mut AsyncPgConnection,
    category: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Template>, Error> {
    let headers = store::list(conn, category, after, limit).await?;
    let keys: Vec<(String, i32)> = headers
        .iter()
        .map(|h| (h.template_id.clone(), h.current_version))
        .collect();
    let versions = store::versions(conn, &keys).await?;
    Ok(headers
        .into_iter()
        .zip(versions)
        .map(|(header, v)| Template {
            version: header.current_version,
            header,
            contents: v.contents,
            author_user_id: v.author_user_id,
        })
        .collect())
}

/// Renders `draft` in `locale` with `values`; declared variables not given
/// are shown as "[name]". Errors are returned, not raised: a preview shows
/// them.
pub fn preview(
    draft: &Draft,
    locale: &str,
    values: &BTreeMap<String, String>,
) -> (Option<Rendered>, Vec<TemplateError>) {
    let errors = render::check(&draft.contents, &draft.variables);
    let Some(content) = render::choose(&draft.contents, locale, &draft.default_locale) else {
        return (None, errors);
    };
    let errors: Vec<TemplateError> = errors
        .into_iter()
        .filter(|e| e.locale == content.locale)
        .collect();
    if !errors.is_empty() {
        return (None, errors);
    }
    let mut all = render::sample_values(&draft.variables, &content.locale);
    all.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    match render::render(content, &all) {
        Ok(r) => (Some(r), Vec::new()),
        Err(e) => (None, vec![e]),
    }
}

impl From<&Template> for Draft {
    fn from(t: &Template) -> Self {
        Self {
            template_id: t.header.template_id.clone(),
            category: t.header.category.clone(),
            description: t.header.description.clone(),
            default_locale: t.header.default_locale.clone(),
            variables: t.header.variables.clone(),
            contents: t.contents.clone(),
        }
    }
}
