use super::*;
use crate::{api::access_table, auth::Role};
use utoipa::openapi::HttpMethod;

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        _ => "OTHER",
    }
}

#[test]
fn every_route_is_documented_with_its_role_and_nothing_else_is() {
    for metrics_require_token in [false, true] {
        let table = access_table(metrics_require_token);
        let doc = document(&table);
        let mut documented = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, operation) in methods(item) {
                let method = method_name(&method);
                let access = table
                    .iter()
                    .find(|(m, p, _)| *m == method && p == path)
                    .map(|(_, _, a)| *a)
                    .unwrap_or_else(|| panic!("{method} {path} is documented but not routed"));
                let role = operation
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("x-required-role"))
                    .and_then(|v| v.as_str());
                assert_eq!(role, Some(access.as_str()), "{method} {path}");
                let responses = &operation.responses.responses;
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}: no success response"
                );
                if let Access::Token(_) = access {
                    for status in ["401", "403", "429"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
                documented.push((method, path.clone()));
            }
        }
        for (method, path, _) in &table {
            assert!(
                documented.iter().any(|(m, p)| m == method && p == path),
                "{method} {path} is routed but not documented"
            );
        }
    }
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme_and_the_envelope() {
    let table = access_table(false);
    let json: serde_json::Value =
        serde_json::from_str(&document(&table).to_json().expect("renders")).expect("json");
    assert!(
        json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    assert_eq!(
        json["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let detail = &json["components"]["schemas"]["ErrorDetail"];
    for field in ["code", "message", "request_id"] {
        assert!(detail["properties"][field].is_object(), "{field}: {detail}");
    }
    assert_eq!(
        json["paths"]["/ops/agents/{id}/revoke"]["post"]["x-required-role"],
        Role::Admin.as_str()
    );
    assert_eq!(json["paths"]["/health"]["get"]["x-required-role"], "none");
    assert_eq!(
        json["paths"]["/metrics"]["get"]["x-required-role"], "none",
        "metrics open by default"
    );
    let strict = access_table(true);
    let json: serde_json::Value =
        serde_json::from_str(&document(&strict).to_json().expect("renders")).expect("json");
    assert_eq!(
        json["paths"]["/metrics"]["get"]["x-required-role"],
        "viewer"
    );
}
