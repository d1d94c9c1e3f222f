//! Azure ACR logins through a loopback stand-in (tests/src/acr_standin.rs) for the instance
//! metadata service and ACR's auth front, with a real registry behind it: the managed
//! identity's token (for the right cloud's scope, with the user-assigned client id), the
//! tenant from the `/v2/` challenge or from `azure_tenant_id`, the refresh-token exchange,
//! then pushes and checks with the login. Azure itself is not reached: this shows kiln
//! speaks the flow as the stand-in models it, no more.

use kiln_tests::acr_standin::{AcrExpectations, AcrStandIn, REFRESH_TOKEN};
use kiln_tests::dev_env_or_skip;
use kiln_tests::harness::{Outcome, command, run};
use kiln_tests::images::noise_image_tar;
use kiln_tests::registry::PrivateRegistry;
use serde_json::{Value, json};

fn step(bin: &str, dir: Option<&std::path::Path>, standin: &AcrStandIn, request: &Value) -> Outcome {
    let mut cmd = command(bin);
    if let Some(dir) = dir {
        cmd.arg(dir);
    }
    cmd.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", format!("http://{}", standin.addr));
    run(cmd, request.to_string().as_bytes())
}

#[test]
fn a_managed_identity_logs_in_through_the_exchange() {
    let _env = dev_env_or_skip!();
    let registry = PrivateRegistry::start();
    let expect = AcrExpectations {
        tenant: "72f988bf-kiln-tenant".into(),
        client_id: Some("kiln-identity-client".into()),
        resource: "https://management.usgovcloudapi.net/".into(),
    };
    let standin = AcrStandIn::start(&registry.addr, expect);
    let work = tempfile::tempdir().unwrap();
    let digest = noise_image_tar(work.path(), "1.0.0", 4096, 31);
    let source = json!({
        "repository": format!("{}/app", standin.addr),
        "insecure": true,
        "azure_acr": true,
        "azure_client_id": "kiln-identity-client",
        "azure_environment": "AzureGovernment",
    });

    // The tenant comes from the challenge.
    let out = step(
        "out",
        Some(work.path()),
        &standin,
        &json!({ "source": source, "params": { "image": "image.tar", "version": "1.0.0" } }),
    );
    out.success();
    assert_eq!(out.json()["version"]["digest"], json!(digest), "{}", out.stderr);
    let seen = standin.seen();
    for wanted in ["GET /metadata/identity/oauth2/token", "GET /v2/", "POST /oauth2/exchange", "GET /oauth2/token"] {
        assert!(seen.iter().any(|s| s == wanted), "{wanted} not in {seen:?}");
    }
    assert!(!out.stderr.contains(REFRESH_TOKEN), "the refresh token was printed");

    // azure_tenant_id given: check logs in without asking the registry for the tenant first.
    let mut given = source.clone();
    given["azure_tenant_id"] = "72f988bf-kiln-tenant".into();
    let before = standin.seen().len();
    let out = step("check", None, &standin, &json!({ "source": given }));
    assert_eq!(out.success().json()[0]["digest"], json!(digest), "{}", out.stderr);
    let first_after_identity = standin.seen()[before + 1].clone();
    assert_eq!(first_after_identity, "POST /oauth2/exchange");

    // The wrong cloud (public instead of government), a wrong tenant, another identity.
    let cases = [
        ("azure_environment", json!("AzurePublic"), "invalid_resource"),
        ("azure_tenant_id", json!("someone-else"), "ACR token exchange"),
        ("azure_client_id", json!("not-this-identity"), "Identity not found"),
    ];
    for (field, value, says) in cases {
        let mut source = source.clone();
        source[field] = value;
        let out = step("check", None, &standin, &json!({ "source": source }));
        out.failure();
        assert!(out.stderr.contains("ACR login") && out.stderr.contains(says), "{field}: {}", out.stderr);
    }
}
