//! The built-in templates: one for every mail the admin panel implies.
//! Installed at start-up when absent; an admin's later version is never
//! overwritten.

use diesel_async::SimpleAsyncConnection;
use steward_kit::db::Pool;

use super::{commands::Draft, store};
use crate::{domain::render::Content, error::Error};

/// The category the Change group dialog lists.
pub const GROUP_CHANGE: &str = "group_change";

struct Seed {
    id: &'static str,
    category: &'static str,
    description: &'static str,
    variables: &'static [&'static str],
    subject: &'static str,
    text: &'static str,
    html: &'static str,
}

const GROUP: &[&str] = &["old_group", "new_group"];
const IMPERSONATION: &[&str] = &["admin_user_id", "reason", "session_id", "expire_time"];

const SEEDS: &[Seed] = &[
    Seed {
        id: "group.changed",
        category: GROUP_CHANGE,
        description: "Your account moved to another group",
        variables: GROUP,
        subject: "Your {{ product_name }} account is now in the {{ new_group }} group",
        text: "Hello,\n\nyour account {{ recipient }} moved from the {{ old_group }} group to the {{ new_group }} group.\n\nDashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>your account {{ recipient }} moved from the <b>{{ old_group }}</b> group to the <b>{{ new_group }}</b> group.</p>\n<p><a href=\"{{ dashboard_url }}\">Open the dashboard</a></p>\n",
    },
    Seed {
        id: "group.billing.welcome",
        category: GROUP_CHANGE,
        description: "Welcome to billing: the trial is over, the account is a paying one",
        variables: GROUP,
        subject: "Welcome to {{ product_name }} billing",
        text: "Hello,\n\nyour account {{ recipient }} is now a billing account (group {{ new_group }}, before: {{ old_group }}). Trial limits no longer apply; usage is charged from your balance.\n\nDashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>your account {{ recipient }} is now a <b>billing</b> account (group {{ new_group }}, before: {{ old_group }}). Trial limits no longer apply; usage is charged from your balance.</p>\n<p><a href=\"{{ dashboard_url }}\">Open the dashboard</a></p>\n",
    },
    Seed {
        id: "group.trial.moved",
        category: GROUP_CHANGE,
        description: "Moved to trial: trial limits apply again",
        variables: GROUP,
        subject: "Your {{ product_name }} account is on trial",
        text: "Hello,\n\nyour account {{ recipient }} moved to the {{ new_group }} group (before: {{ old_group }}). Trial limits apply from now on.\n\nDashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>your account {{ recipient }} moved to the <b>{{ new_group }}</b> group (before: {{ old_group }}). Trial limits apply from now on.</p>\n<p><a href=\"{{ dashboard_url }}\">Open the dashboard</a></p>\n",
    },
    Seed {
        id: "user.email.changed",
        category: "account",
        description: "The login email changed (sent to the old and the new address)",
        variables: &["old_email", "new_email"],
        subject: "Your {{ product_name }} login is now {{ new_email }}",
        text: "Hello,\n\n{% if recipient == old_email %}the login of your account changed from this address to {{ new_email }}. If you did not ask for this, contact support.{% else %}this address is now the login of your account (before: {{ old_email }}).{% endif %}\n\nNew login: {{ new_email }}\nDashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>{% if recipient == old_email %}the login of your account changed from this address to <b>{{ new_email }}</b>. If you did not ask for this, contact support.{% else %}this address is now the login of your account (before: {{ old_email }}).{% endif %}</p>\n<p>New login: <b>{{ new_email }}</b><br><a href=\"{{ dashboard_url }}\">Open the dashboard</a></p>\n",
    },
    Seed {
        id: "user.status.suspended",
        category: "account",
        description: "The account was suspended",
        variables: &[],
        subject: "Your {{ product_name }} account is suspended",
        text: "Hello,\n\nyour account {{ recipient }} has been suspended: its environments are stopped and you cannot sign in. Contact support to restore it.\n",
        html: "<p>Hello,</p>\n<p>your account {{ recipient }} has been <b>suspended</b>: its environments are stopped and you cannot sign in. Contact support to restore it.</p>\n",
    },
    Seed {
        id: "user.status.activated",
        category: "account",
        description: "The account was activated",
        variables: &[],
        subject: "Your {{ product_name }} account is active",
        text: "Hello,\n\nyour account {{ recipient }} is active again.\n\nDashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>your account {{ recipient }} is <b>active</b> again.</p>\n<p><a href=\"{{ dashboard_url }}\">Open the dashboard</a></p>\n",
    },
    Seed {
        id: "user.status.destroyed",
        category: "account",
        description: "The account was destroyed",
        variables: &[],
        subject: "Your {{ product_name }} account was destroyed",
        text: "Hello,\n\nyour account {{ recipient }} and its environments were destroyed. This cannot be undone.\n",
        html: "<p>Hello,</p>\n<p>your account {{ recipient }} and its environments were <b>destroyed</b>. This cannot be undone.</p>\n",
    },
    Seed {
        id: "user.personal_data.erased",
        category: "account",
        description: "The account's personal data was deleted",
        variables: &[],
        subject: "Your personal data at {{ product_name }} was deleted",
        text: "Hello,\n\nas requested, the personal data of your account was deleted. This is the last mail we send to {{ recipient }}.\n",
        html: "<p>Hello,</p>\n<p>as requested, the personal data of your account was deleted. This is the last mail we send to {{ recipient }}.</p>\n",
    },
    Seed {
        id: "impersonation.started",
        category: "security",
        description: "An administrator signed in as the user (who and why)",
        variables: IMPERSONATION,
        subject: "An administrator signed in to your {{ product_name }} account",
        text: "Hello,\n\nadministrator {{ admin_user_id }} signed in to your account.\nReason: {{ reason }}\nThe session ends at {{ expire_time }} at the latest (session {{ session_id }}).\n",
        html: "<p>Hello,</p>\n<p>administrator <b>{{ admin_user_id }}</b> signed in to your account.</p>\n<p>Reason: {{ reason }}<br>The session ends at {{ expire_time }} at the latest (session {{ session_id }}).</p>\n",
    },
    Seed {
        id: "impersonation.stopped",
        category: "security",
        description: "An administrator's session as the user ended",
        variables: IMPERSONATION,
        subject: "An administrator's session in your {{ product_name }} account ended",
        text: "Hello,\n\nthe session of administrator {{ admin_user_id }} in your account ended (session {{ session_id }}, reason given: {{ reason }}).\n",
        html: "<p>Hello,</p>\n<p>the session of administrator <b>{{ admin_user_id }}</b> in your account ended (session {{ session_id }}, reason given: {{ reason }}).</p>\n",
    },
    Seed {
        id: "user.two_factor.disabled",
        category: "security",
        description: "An administrator turned two-factor sign-in off",
        variables: &[],
        subject: "Two-factor sign-in was turned off for your {{ product_name }} account",
        text: "Hello,\n\nan administrator turned two-factor sign-in off for {{ recipient }}. Turn it on again in the dashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>an administrator turned two-factor sign-in <b>off</b> for {{ recipient }}. <a href=\"{{ dashboard_url }}\">Turn it on again</a>.</p>\n",
    },
    Seed {
        id: "user.password.changed",
        category: "security",
        description: "The password changed",
        variables: &[],
        subject: "Your {{ product_name }} password changed",
        text: "Hello,\n\nthe password of {{ recipient }} changed. If this was not you, contact support at once.\n",
        html: "<p>Hello,</p>\n<p>the password of {{ recipient }} changed. If this was not you, contact support at once.</p>\n",
    },
    Seed {
        id: "api_token.created",
        category: "security",
        description: "An API token was created",
        variables: &["token_name"],
        subject: "A new {{ product_name }} API token: {{ token_name }}",
        text: "Hello,\n\nan API token named {{ token_name }} was created for {{ recipient }}. If this was not you, revoke it in the dashboard: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>an API token named <b>{{ token_name }}</b> was created for {{ recipient }}. If this was not you, <a href=\"{{ dashboard_url }}\">revoke it</a>.</p>\n",
    },
    Seed {
        id: "billing.balance.low",
        category: "billing",
        description: "The balance is running low",
        variables: &["balance", "currency"],
        subject: "Your {{ product_name }} balance is low: {{ balance }} {{ currency }}",
        text: "Hello,\n\nthe balance of {{ recipient }} is {{ balance }} {{ currency }}. Refill it to keep your environments running: {{ dashboard_url }}\n",
        html: "<p>Hello,</p>\n<p>the balance of {{ recipient }} is <b>{{ balance }} {{ currency }}</b>. <a href=\"{{ dashboard_url }}\">Refill it</a> to keep your environments running.</p>\n",
    },
];

fn draft(s: &Seed) -> Draft {
    Draft {
        template_id: s.id.into(),
        category: s.category.into(),
        description: s.description.into(),
        default_locale: "en".into(),
        variables: s.variables.iter().map(|v| v.to_string()).collect(),
        contents: vec![Content {
            locale: "en".into(),
            subject: s.subject.into(),
            text_body: s.text.into(),
            html_body: s.html.into(),
        }],
    }
}

/// Inserts the seeds not present yet, in one transaction.
pub async fn install(pool: &Pool) -> Result<(), Error> {
    let mut conn = pool.get().await?;
    conn.batch_execute("BEGIN").await?;
    let written = async {
        for seed in SEEDS {
            let d = draft(seed);
            if store::insert_header(&mut conn, &d.header(), true, true).await? {
                store::insert_version(&mut conn, &d.template_id, 1, &d.contents, "").await?;
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    match written {
        Ok(()) => conn.batch_execute("COMMIT").await?,
        Err(e) => {
            // A failed rollback marks the connection broken; the pool drops it.
            let _ = conn.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_checks_and_ids_are_unique() {
        let mut ids = std::collections::BTreeSet::new();
        for seed in SEEDS {
            assert!(ids.insert(seed.id), "{} twice", seed.id);
            let d = draft(seed);
            super::super::commands::check(&d).unwrap_or_else(|e| panic!("{}: {e}", seed.id));
        }
        assert!(SEEDS.iter().filter(|s| s.category == GROUP_CHANGE).count() >= 3);
    }

    #[test]
    fn email_change_tells_each_address_its_side() {
        let d = draft(SEEDS.iter().find(|s| s.id == "user.email.changed").unwrap());
        let mut values = crate::domain::render::sample_values(&d.variables, "en");
        values.insert("old_email".into(), "old@example.com".into());
        values.insert("new_email".into(), "new@example.com".into());
        values.insert("recipient".into(), "old@example.com".into());
        let old = crate::domain::render::render(&d.contents[0], &values).unwrap();
        values.insert("recipient".into(), "new@example.com".into());
        let new = crate::domain::render::render(&d.contents[0], &values).unwrap();
        assert!(old.text_body.contains("changed from this address"));
        assert!(new.text_body.contains("is now the login"));
    }
}
