//! Method policies, read once from the descriptor set.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use prost_reflect::{DescriptorPool, Value};
use steward_proto::common::Access;

/// The extension every Steward RPC must carry.
pub const POLICY_EXTENSION: &str = "steward.common.v1.policy";

/// Infrastructure services every server exposes without a token.
const PUBLIC_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodPolicy {
    pub allow: Vec<Access>,
    /// Empty for reads.
    pub audit_action: String,
    /// Refused to impersonation tokens.
    pub forbidden_while_impersonating: bool,
}

impl MethodPolicy {
    pub fn allows(&self, access: Access) -> bool {
        self.allow.contains(&access)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("descriptor set does not decode: {0}")]
    Descriptor(String),
    #[error("descriptor set lacks the {POLICY_EXTENSION} extension")]
    NoExtension,
}

/// gRPC path (`/package.Service/Method`) -> policy.
#[derive(Debug, Clone)]
pub struct PolicyTable {
    methods: Arc<HashMap<String, MethodPolicy>>,
    /// Every RPC of every Steward service, with or without a policy.
    all_methods: Arc<BTreeSet<String>>,
}

impl PolicyTable {
    /// Reads the policies of every `steward.*` service in `descriptor_set`.
    pub fn from_descriptor_set(descriptor_set: &[u8]) -> Result<Self, PolicyError> {
        let pool = DescriptorPool::decode(descriptor_set)
            .map_err(|e| PolicyError::Descriptor(e.to_string()))?;
        let extension = pool
            .get_extension_by_name(POLICY_EXTENSION)
            .ok_or(PolicyError::NoExtension)?;
        let mut methods = HashMap::new();
        let mut all_methods = BTreeSet::new();
        for service in pool.services() {
            if !service.full_name().starts_with("steward.") {
                continue;
            }
            for method in service.methods() {
                let path = format!("/{}/{}", service.full_name(), method.name());
                all_methods.insert(path.clone());
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let value = options.get_extension(&extension);
                let Value::Message(policy) = value.as_ref() else {
                    continue;
                };
                let allow = match policy.get_field_by_name("allow").as_deref() {
                    Some(Value::List(items)) => items
                        .iter()
                        .filter_map(|v| v.as_enum_number())
                        .filter_map(|n| Access::try_from(n).ok())
                        .filter(|a| *a != Access::Unspecified)
                        .collect(),
                    _ => Vec::new(),
                };
                let audit_action = policy
                    .get_field_by_name("audit_action")
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let forbidden_while_impersonating = policy
                    .get_field_by_name("forbidden_while_impersonating")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                // A policy that admits nobody is the same as none.
                if !allow.is_empty() {
                    methods.insert(
                        path,
                        MethodPolicy {
                            allow,
                            audit_action,
                            forbidden_while_impersonating,
                        },
                    );
                }
            }
        }
        Ok(Self {
            methods: Arc::new(methods),
            all_methods: Arc::new(all_methods),
        })
    }

    /// The policy of a gRPC path; `None` means the call is denied.
    pub fn get(&self, path: &str) -> Option<&MethodPolicy> {
        self.methods.get(path)
    }

    /// Is `path` an RPC of a Steward service (with or without a policy)?
    /// A call to anything else is UNIMPLEMENTED, not denied.
    pub fn knows(&self, path: &str) -> bool {
        self.all_methods.contains(path)
    }

    /// The full names of the Steward services (`steward.accounts.v1.AuthService`), sorted.
    pub fn services(&self) -> Vec<String> {
        let services: BTreeSet<&str> = self
            .all_methods
            .iter()
            .filter_map(|path| path.strip_prefix('/')?.split_once('/'))
            .map(|(service, _)| service)
            .collect();
        services.into_iter().map(str::to_owned).collect()
    }

    /// Health and reflection: open to all.
    pub fn is_public_infrastructure(path: &str) -> bool {
        PUBLIC_SERVICES
            .iter()
            .any(|prefix| path.starts_with(prefix))
    }

    /// Steward RPCs lacking a policy (must be none; checked by a test).
    pub fn methods_without_policy(&self) -> Vec<String> {
        self.all_methods
            .iter()
            .filter(|m| !self.methods.contains_key(*m))
            .cloned()
            .collect()
    }

    /// `(path, policy)` of each method of `service` (full name) that has one.
    pub fn methods_of(&self, service: &str) -> Vec<(String, MethodPolicy)> {
        let prefix = format!("/{service}/");
        let mut methods: Vec<_> = self
            .methods
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .map(|(path, policy)| (path.clone(), policy.clone()))
            .collect();
        methods.sort_by(|a, b| a.0.cmp(&b.0));
        methods
    }

    pub fn len(&self) -> usize {
        self.all_methods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all_methods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_every_proto_has_a_policy() {
        let table = PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET).unwrap();
        assert!(table.len() > 10, "descriptor set holds the services");
        assert_eq!(table.methods_without_policy(), Vec::<String>::new());
    }

    #[test]
    fn reads_allow_list_and_audit_action() {
        let table = PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET).unwrap();
        let get = table
            .get("/steward.accounts.v1.AccountsService/GetUser")
            .unwrap();
        assert_eq!(
            get.allow,
            [Access::Self_, Access::UserAdmin, Access::PlatformService]
        );
        assert_eq!(get.audit_action, "");
        let create = table
            .get("/steward.accounts.v1.AccountsService/CreateUser")
            .unwrap();
        assert_eq!(create.audit_action, "user.created");
        assert!(!create.allows(Access::Self_));
        assert!(!create.forbidden_while_impersonating);
        assert!(
            table
                .get("/steward.billing.v1.BillingService/Withdraw")
                .unwrap()
                .forbidden_while_impersonating
        );
        assert!(
            table
                .get("/steward.accounts.v1.AccountsService/Nope")
                .is_none()
        );
    }

    #[test]
    fn knows_every_method_and_lists_the_services() {
        let table = PolicyTable::from_descriptor_set(steward_proto::FILE_DESCRIPTOR_SET).unwrap();
        assert!(table.knows("/steward.accounts.v1.AccountsService/GetUser"));
        assert!(!table.knows("/steward.accounts.v1.AccountsService/NoSuchMethod"));
        assert!(!table.knows("/grpc.health.v1.Health/Check"));
        let services = table.services();
        assert!(services.contains(&"steward.accounts.v1.AuthService".to_owned()));
        assert!(services.contains(&"steward.billing.v1.BillingService".to_owned()));
        assert!(services.iter().all(|s| s.starts_with("steward.")));
    }
}
