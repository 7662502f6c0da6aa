//! The one composition root: builds any set of components from a
//! [`Config`] and the resolved database and keys. `steward up` builds them
//! all, `steward serve <component>` one, and the integration tests the ones
//! they need, so what the tests run is what users run; the tests override
//! only ports, the database and keys.

use std::{collections::BTreeMap, net::SocketAddr};

use anyhow::Context;
use steward_accounts as accounts;
use steward_audit as audit;
use steward_billing as billing;
use steward_gateway as gateway;
use steward_kit::{
    auth::{
        KeySet, PolicyTable, Revocations, TokenSigner, TokenVerifier,
        refusals::RefusalAudit,
        revocations::{Feed, stream_channel},
    },
    db,
    page::PageTokens,
    server::Security,
};
use steward_notifications as notifications;
use steward_quotas as quotas;
use tokio::{net::TcpListener, sync::watch};

use crate::{Component, config::Config};

/// What a suite needs besides its configuration: where the data is and the
/// keys (resolved by the binary from config and data dir, or by a test).
#[derive(Clone)]
pub struct Resolved {
    pub database_url: String,
    pub signer: TokenSigner,
    /// `auth.public_keys`: retired keys still verifying and published.
    pub retired: KeySet,
}

impl Resolved {
    /// Verifies with the signing and retired keys, and refuses what the
    /// process's revocation list revokes.
    fn security(&self, revocations: &Revocations) -> anyhow::Result<Security> {
        let mut keys = self.retired.clone();
        keys.add(self.signer.verifying_key());
        Ok(Security {
            policies: PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET)?,
            verifier: TokenVerifier::new(keys).with_revocations(revocations.clone()),
            refusals: None,
        })
    }

    /// [`Resolved::security`] of a service that records the access refusals
    /// it decides in its own outbox, as `source`.
    fn security_recording(
        &self,
        revocations: &Revocations,
        pool: &db::Pool,
        source: &'static str,
    ) -> anyhow::Result<Security> {
        Ok(Security {
            refusals: Some(RefusalAudit::spawn(pool.clone(), source)),
            ..self.security(revocations)?
        })
    }

    fn page_tokens(&self) -> PageTokens {
        PageTokens::derive(&self.signer.derived_secret("page-tokens"))
    }
}

/// A component serving until the shared stop signal.
enum App {
    Accounts(Box<accounts::Application>),
    Audit(Box<audit::Application>),
    Billing(Box<billing::Application>),
    Gateway(Box<gateway::Application>),
    Notifications(Box<notifications::Application>),
    Quotas(Box<quotas::Application>),
}

impl App {
    async fn run(self, stopped: watch::Receiver<bool>) -> Result<(), tonic::transport::Error> {
        match self {
            App::Accounts(app) => app.run_until_stopped(stopped).await,
            App::Audit(app) => app.run_until_stopped(stopped).await,
            App::Billing(app) => app.run_until_stopped(stopped).await,
            App::Gateway(app) => app.run_until_stopped(stopped).await,
            App::Notifications(app) => app.run_until_stopped(stopped).await,
            App::Quotas(app) => app.run_until_stopped(stopped).await,
        }
    }
}

/// Built components, bound and ready to run.
pub struct Suite {
    apps: Vec<App>,
    addrs: BTreeMap<Component, SocketAddr>,
    metrics: Option<TcpListener>,
    gateway_metrics: Option<gateway::metrics::Metrics>,
    /// Where notifications delivers mail, in words, when built.
    mail: Option<String>,
    /// The revocation list every service of this process checks (the
    /// gateway follows its own), and the subscription keeping it current.
    revocations: Revocations,
    feed: Option<Feed>,
}

impl Suite {
    /// Builds `components` (migrating their schemas first) in dependency
    /// order: audit first so that the others' outbox relays point at it when
    /// `outbox.audit_endpoint` is unset, the gateway last, in front of every
    /// service built here.
    pub async fn build(
        mut config: Config,
        resolved: &Resolved,
        components: &[Component],
    ) -> anyhow::Result<Self> {
        let wanted = |c: Component| components.contains(&c);
        if let Some(other) = components.iter().find(|c| !c.exists()) {
            anyhow::bail!("component {other:?} is not part of this release yet");
        }
        let url = resolved.database_url.as_str();
        let mut suite = Suite {
            apps: Vec::new(),
            addrs: BTreeMap::new(),
            metrics: None,
            gateway_metrics: None,
            mail: None,
            revocations: Revocations::new(),
            feed: None,
        };
        let revocations = suite.revocations.clone();
        if let Some(listen) = config.metrics.listen {
            suite.metrics = Some(
                TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding metrics.listen {listen}"))?,
            );
        }
        if wanted(Component::Audit) {
            db::migrate(url, audit::SCHEMA, audit::MIGRATIONS).await?;
            let app = audit::Application::build(audit::Deps {
                pool: db::pool(url, audit::SCHEMA, &config.pool).await?,
                database_url: url.to_owned(),
                security: resolved.security(&revocations)?,
                page_tokens: resolved.page_tokens(),
                server: config.server.clone(),
                config: config.audit.clone(),
            })
            .await
            .with_context(|| format!("binding audit on {}", config.audit.listen))?;
            suite.add(
                Component::Audit,
                app.local_addr(),
                App::Audit(Box::new(app)),
            );
            if config.outbox.audit_endpoint.is_none() {
                config.outbox.audit_endpoint = Some(suite.url(Component::Audit));
            }
        }
        // Billing before accounts, so that accounts' outbox tells it of
        // erasures when `outbox.erasure_endpoints` is unset.
        if wanted(Component::Billing) {
            db::migrate(url, billing::SCHEMA, billing::MIGRATIONS).await?;
            let pool = db::pool(url, billing::SCHEMA, &config.pool).await?;
            let app = billing::Application::build(billing::Deps {
                security: resolved.security_recording(&revocations, &pool, billing::SOURCE)?,
                pool,
                database_url: url.to_owned(),
                page_tokens: resolved.page_tokens(),
                signer: Some(resolved.signer.clone()),
                server: config.server.clone(),
                outbox: config.outbox.clone(),
                config: config.billing.clone(),
            })
            .await
            .with_context(|| format!("binding billing on {}", config.billing.listen))?;
            // Accounts' erasures reach billing's PersonalDataService.
            if config.outbox.erasure_endpoints.is_empty() {
                config
                    .outbox
                    .erasure_endpoints
                    .push(format!("http://{}", app.local_addr()));
            }
            suite.add(
                Component::Billing,
                app.local_addr(),
                App::Billing(Box::new(app)),
            );
        }
        // Notifications before accounts and billing, so that their outbox
        // relays ship mail requests to it when
        // `outbox.notifications_endpoint` is unset.
        if wanted(Component::Notifications) {
            db::migrate(url, notifications::SCHEMA, notifications::MIGRATIONS).await?;
            let pool = db::pool(url, notifications::SCHEMA, &config.pool).await?;
            let mut own = config.notifications.clone();
            // No SMTP server: real rendered mail as .eml files in the data dir.
            if own.smtp.host.is_none() && own.mail_dir.is_none() {
                own.mail_dir = Some(config.data_dir().join("mail"));
            }
            let app = notifications::Application::build(notifications::Deps {
                security: resolved.security_recording(
                    &revocations,
                    &pool,
                    notifications::SOURCE,
                )?,
                pool,
                database_url: url.to_owned(),
                page_tokens: resolved.page_tokens(),
                signer: Some(resolved.signer.clone()),
                server: config.server.clone(),
                outbox: config.outbox.clone(),
                config: own.clone(),
            })
            .await
            .with_context(|| format!("building notifications on {}", own.listen))?;
            suite.mail = Some(own.describe_transport());
            suite.add(
                Component::Notifications,
                app.local_addr(),
                App::Notifications(Box::new(app)),
            );
            if config.outbox.notifications_endpoint.is_none() {
                config.outbox.notifications_endpoint = Some(suite.url(Component::Notifications));
            }
        }
        // Quotas before accounts, so that accounts' outbox ships group
        // membership to it when `outbox.quotas_endpoint` is unset; quotas
        // learns accounts' address once accounts is bound (below).
        let mut quotas_app = None;
        if wanted(Component::Quotas) {
            db::migrate(url, quotas::SCHEMA, quotas::MIGRATIONS).await?;
            let pool = db::pool(url, quotas::SCHEMA, &config.pool).await?;
            let app = quotas::Application::build(quotas::Deps {
                security: resolved.security_recording(&revocations, &pool, quotas::SOURCE)?,
                pool,
                database_url: url.to_owned(),
                page_tokens: resolved.page_tokens(),
                signer: Some(resolved.signer.clone()),
                server: config.server.clone(),
                outbox: config.outbox.clone(),
                config: config.quotas.clone(),
            })
            .await
            .with_context(|| format!("binding quotas on {}", config.quotas.listen))?;
            if config.outbox.quotas_endpoint.is_none() {
                config.outbox.quotas_endpoint = Some(format!("http://{}", app.local_addr()));
            }
            quotas_app = Some(app);
        }
        if wanted(Component::Accounts) {
            db::migrate(url, accounts::SCHEMA, accounts::MIGRATIONS).await?;
            let pool = db::pool(url, accounts::SCHEMA, &config.pool).await?;
            let app = accounts::Application::build(accounts::Deps {
                security: resolved.security_recording(&revocations, &pool, accounts::SOURCE)?,
                pool,
                database_url: url.to_owned(),
                page_tokens: resolved.page_tokens(),
                signer: resolved.signer.clone(),
                retired_keys: resolved.retired.clone(),
                server: config.server.clone(),
                outbox: config.outbox.clone(),
                config: config.accounts.clone(),
            })
            .await
            .with_context(|| format!("binding accounts on {}", config.accounts.listen))?;
            suite.add(
                Component::Accounts,
                app.local_addr(),
                App::Accounts(Box::new(app)),
            );
        }
        if let Some(app) = quotas_app {
            let accounts_endpoint = config.quotas.accounts_endpoint.clone().or_else(|| {
                config.auth.accounts_endpoint.clone().or_else(|| {
                    suite
                        .addr(Component::Accounts)
                        .map(|_| suite.url(Component::Accounts))
                })
            });
            match accounts_endpoint {
                Some(endpoint) => app.set_accounts_endpoint(&endpoint),
                None => tracing::warn!(
                    "quotas.accounts_endpoint unset and no accounts here: users quotas has not heard of are NOT_FOUND until accounts' events arrive"
                ),
            }
            suite.add(
                Component::Quotas,
                app.local_addr(),
                App::Quotas(Box::new(app)),
            );
        }
        // Audit (built first) and every later service share the list; the
        // subscription starts with the suite.
        let accounts_endpoint = config.auth.accounts_endpoint.clone().or_else(|| {
            suite
                .addr(Component::Accounts)
                .map(|_| suite.url(Component::Accounts))
        });
        match accounts_endpoint {
            Some(endpoint) => {
                let channel = stream_channel(&endpoint)
                    .with_context(|| format!("auth.accounts_endpoint {endpoint}"))?;
                suite.feed = Some(Feed::new(
                    channel,
                    resolved.signer.clone(),
                    "service:steward",
                ));
            }
            None if wanted(Component::Audit) || wanted(Component::Billing) => {
                tracing::warn!(
                    "no accounts in this process and auth.accounts_endpoint unset: revoked tokens are accepted until they expire"
                );
            }
            None => {}
        }
        if wanted(Component::Gateway) {
            for (component, addr) in &suite.addrs {
                config
                    .gateway
                    .backends
                    .insert(component.name().to_owned(), format!("http://{addr}"));
            }
            let app = gateway::Application::build(gateway::Deps {
                config: config.gateway.clone(),
                policies: resolved.security(&revocations)?.policies,
                keys: resolved.retired.clone(),
                signer: Some(resolved.signer.clone()),
            })
            .await
            .with_context(|| format!("binding the gateway on {}", config.gateway.listen))?;
            suite.gateway_metrics = Some(app.metrics());
            suite.add(
                Component::Gateway,
                app.local_addr(),
                App::Gateway(Box::new(app)),
            );
        }
        Ok(suite)
    }

    fn add(&mut self, component: Component, addr: SocketAddr, app: App) {
        self.addrs.insert(component, addr);
        self.apps.push(app);
    }

    /// Where `component` listens, when built.
    pub fn addr(&self, component: Component) -> Option<SocketAddr> {
        self.addrs.get(&component).copied()
    }

    /// `http://` + [`Suite::addr`].
    pub fn url(&self, component: Component) -> String {
        format!("http://{}", self.addrs[&component])
    }

    /// Every built component with its address, in a stable order.
    pub fn addrs(&self) -> impl Iterator<Item = (Component, SocketAddr)> + '_ {
        self.addrs.iter().map(|(c, a)| (*c, *a))
    }

    /// The metrics address, when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where notifications delivers mail ("smtp://..." or ".eml files in
    /// ..."), when built.
    pub fn mail_transport(&self) -> Option<&str> {
        self.mail.as_deref()
    }

    pub fn gateway_metrics(&self) -> Option<gateway::metrics::Metrics> {
        self.gateway_metrics.clone()
    }

    /// Runs every component until `stopped` turns true, or until one of them
    /// fails (which stops the others).
    pub async fn run_until_stopped(self, stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
        let (stop, inner) = steward_kit::server::linked_stop(&stopped);
        let mut tasks = tokio::task::JoinSet::new();
        for app in self.apps {
            tasks.spawn(app.run(inner.clone()));
        }
        if let Some(feed) = self.feed {
            let (revocations, inner) = (self.revocations.clone(), inner.clone());
            tasks.spawn(async move {
                feed.run(revocations, inner).await;
                Ok(())
            });
        }
        if let Some(listener) = self.metrics {
            let inner = inner.clone();
            tasks.spawn(async move {
                steward_kit::metrics::serve(listener, inner).await;
                Ok(())
            });
        }
        let mut first_error = None;
        while let Some(result) = tasks.join_next().await {
            let _ = stop.send(true);
            if let Err(e) = result.map_err(anyhow::Error::from).and_then(|r| Ok(r?))
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
