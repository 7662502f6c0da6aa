//! Template queries.

use chrono::{DateTime, Utc};
use diesel::{
    QueryResult, QueryableByName,
    sql_types::{Array, Bool, Integer, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::render::Content;

/// A template's header (what does not change per version).
#[derive(Debug, Clone, QueryableByName)]
pub struct Header {
    #[diesel(sql_type = Text)]
    pub template_id: String,
    #[diesel(sql_type = Text)]
    pub category: String,
    #[diesel(sql_type = Text)]
    pub description: String,
    #[diesel(sql_type = Text)]
    pub default_locale: String,
    #[diesel(sql_type = Array<Text>)]
    pub variables: Vec<String>,
    #[diesel(sql_type = Integer)]
    pub current_version: i32,
    #[diesel(sql_type = Bool)]
    pub built_in: bool,
    #[diesel(sql_type = Timestamptz)]
    pub create_time: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub update_time: DateTime<Utc>,
}

#[derive(Debug, Clone, QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    template_id: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Text)]
    locale: String,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    text_body: String,
    #[diesel(sql_type = Text)]
    html_body: String,
    #[diesel(sql_type = Text)]
    author_user_id: String,
}

/// One version's text in every locale, and who wrote it.
#[derive(Debug, Clone, Default)]
pub struct Version {
    pub contents: Vec<Content>,
    pub author_user_id: String,
}

const HEADER: &str = "template_id, category, description, default_locale, variables, \
                      current_version, built_in, create_time, update_time";

/// The header fields written by create and update.
pub struct HeaderFields<'a> {
    pub template_id: &'a str,
    pub category: &'a str,
    pub description: &'a str,
    pub default_locale: &'a str,
    pub variables: &'a [String],
}

/// Inserts a header at version 1; `false` when the id exists and
/// `if_absent` asked not to fail (seeding).
pub async fn insert_header(
    conn: &mut AsyncPgConnection,
    h: &HeaderFields<'_>,
    built_in: bool,
    if_absent: bool,
) -> QueryResult<bool> {
    let conflict = if if_absent {
        "ON CONFLICT (template_id) DO NOTHING"
    } else {
        ""
    };
    let n = diesel::sql_query(format!(
        "INSERT INTO templates (template_id, category, description, default_locale, variables,
                                current_version, built_in)
         VALUES ($1, $2, $3, $4, $5, 1, $6) {conflict}"
    ))
    .bind::<Text, _>(h.template_id)
    .bind::<Text, _>(h.category)
    .bind::<Text, _>(h.description)
    .bind::<Text, _>(h.default_locale)
    .bind::<Array<Text>, _>(h.variables)
    .bind::<Bool, _>(built_in)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Moves the header to `version` with new fields.
pub async fn update_header(
    conn: &mut AsyncPgConnection,
    h: &HeaderFields<'_>,
    version: i32,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE templates SET category = $2, description = $3, default_locale = $4,
                variables = $5, current_version = $6, update_time = now()
         WHERE template_id = $1",
    )
    .bind::<Text, _>(h.template_id)
    .bind::<Text, _>(h.category)
    .bind::<Text, _>(h.description)
    .bind::<Text, _>(h.default_locale)
    .bind::<Array<Text>, _>(h.variables)
    .bind::<Integer, _>(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes one version's contents.
pub async fn insert_version(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    version: i32,
    contents: &[Content],
    author_user_id: &str,
) -> QueryResult<()> {
    macro_rules! col {
        ($f:ident) => {
            contents.iter().map(|c| c.$f.clone()).collect::<Vec<_>>()
        };
    }
    diesel::sql_query(
        "INSERT INTO template_versions
             (template_id, version, locale, subject, text_body, html_body, author_user_id)
         SELECT $1, $2, c.locale, c.subject, c.text_body, c.html_body, $7
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[])
              AS c(locale, subject, text_body, html_body)",
    )
    .bind::<Text, _>(template_id)
    .bind::<Integer, _>(version)
    .bind::<Array<Text>, _>(col!(locale))
    .bind::<Array<Text>, _>(col!(subject))
    .bind::<Array<Text>, _>(col!(text_body))
    .bind::<Array<Text>, _>(col!(html_body))
    .bind::<Text, _>(author_user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The header; `lock` takes the row lock an update needs.
pub async fn header(
    conn: &mut AsyncPgConnection,
    template_id: &str,
    lock: bool,
) -> QueryResult<Option<Header>> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let mut rows: Vec<Header> = diesel::sql_query(format!(
        "SELECT {HEADER} FROM templates WHERE template_id = $1 {lock}"
    ))
    .bind::<Text, _>(template_id)
    .load(conn)
    .await?;
    Ok(rows.pop())
}

/// The contents of `(template_id, version)` pairs, in the order asked.
pub async fn versions(
    conn: &mut AsyncPgConnection,
    keys: &[(String, i32)],
) -> QueryResult<Vec<Version>> {
    let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
    let numbers: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let rows: Vec<VersionRow> = diesel::sql_query(
        "SELECT v.template_id, v.version, v.locale, v.subject, v.text_body, v.html_body,
                v.author_user_id
         FROM template_versions v
         JOIN UNNEST($1::text[], $2::int[]) AS k(template_id, version)
           ON v.template_id = k.template_id AND v.version = k.version
         ORDER BY v.template_id, v.version, v.locale",
    )
    .bind::<Array<Text>, _>(ids)
    .bind::<Array<Integer>, _>(numbers)
    .load(conn)
    .await?;
    Ok(keys
        .iter()
        .map(|(id, version)| {
            let mine: Vec<&VersionRow> = rows
                .iter()
                .filter(|r| &r.template_id == id && r.version == *version)
                .collect();
            Version {
                author_user_id: <[_]>::first(&mine)
                    .map(|r| r.author_user_id.clone())
                    .unwrap_or_default(),
                contents: mine
                    .into_iter()
                    .map(|r| Content {
                        locale: r.locale.clone(),
                        subject: r.subject.clone(),
                        text_body: r.text_body.clone(),
                        html_body: r.html_body.clone(),
                    })
                    .collect(),
            }
        })
        .collect())
}

/// Headers by id after `after`, optionally of one category.
pub async fn list(
    conn: &mut AsyncPgConnection,
    category: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Header>> {
    diesel::sql_query(format!(
        "SELECT {HEADER} FROM templates
         WHERE ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR template_id > $2)
         ORDER BY template_id LIMIT $3"
    ))
    .bind::<Nullable<Text>, _>(category)
    .bind::<Nullable<Text>, _>(after)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await
}
