//! chat-service's server-side API in the Rust library (`RunningServer::chat_service`):
//! `execUserCommand` with its context — the same checks as a socket's command, bypassed on
//! request, `noSocket` / `invalidSocket` for the commands that need a socket.

mod common;

use common::*;
use plexus_server::chatservice::{ErrorKind, ExecContext};
use serde_json::{Value, json};

fn as_user(user: &str) -> ExecContext {
    ExecContext {
        user: Some(user.into()),
        ..ExecContext::default()
    }
}

#[tokio::test]
async fn exec_user_command_runs_commands_with_the_rules_or_bypassing_them() {
    let server = start(dev()).await;
    let api = server
        .chat_service()
        .expect("development mode serves chat-service");

    // Rooms management is on in development mode: alice creates a room and owns it.
    let created = api
        .exec_user_command(
            as_user("alice"),
            "roomCreate",
            vec![json!("r1"), json!(false)],
        )
        .await
        .unwrap();
    assert_eq!(created, vec![Value::Null]);
    let owner = api
        .exec_user_command(as_user("alice"), "roomGetOwner", vec![json!("r1")])
        .await
        .unwrap();
    assert_eq!(owner, vec![json!("alice")]);

    // A room message needs membership, unless permissions are bypassed.
    let e = api
        .exec_user_command(
            as_user("alice"),
            "roomMessage",
            vec![json!("r1"), json!({"textMessage": "hi"})],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotJoined);
    let bypass = |user: Option<&str>| ExecContext {
        user: user.map(str::to_owned),
        bypass_permissions: true,
        ..ExecContext::default()
    };
    let id = api
        .exec_user_command(
            bypass(Some("alice")),
            "roomMessage",
            vec![json!("r1"), json!({"textMessage": "hi"})],
        )
        .await
        .unwrap();
    assert_eq!(id, vec![json!(1)]);
    // "send room messages without an user": no author.
    let id = api
        .exec_user_command(
            bypass(None),
            "roomMessage",
            vec![json!("r1"), json!({"textMessage": "system"})],
        )
        .await
        .unwrap();
    assert_eq!(id, vec![json!(2)]);
    let history = api
        .exec_user_command(
            bypass(Some("alice")),
            "roomRecentHistory",
            vec![json!("r1")],
        )
        .await
        .unwrap();
    let messages = history[0].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        (messages[0]["id"].clone(), messages[0].get("author")),
        (json!(2), None)
    );
    assert_eq!(
        (messages[1]["id"].clone(), messages[1]["author"].clone()),
        (json!(1), json!("alice"))
    );

    // Commands of a socket need one; an unknown socket is refused; other commands need a user.
    let e = api
        .exec_user_command(as_user("alice"), "roomJoin", vec![json!("r1")])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSocket);
    let e = api
        .exec_user_command(
            ExecContext {
                id: Some("/chat-service#nope".into()),
                ..as_user("alice")
            },
            "roomJoin",
            vec![json!("r1")],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidSocket);
    let e = api
        .exec_user_command(ExecContext::default(), "roomGetOwner", vec![json!("r1")])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoLogin);
    let e = api
        .exec_user_command(as_user("alice"), "teleport", vec![])
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "ChatServiceError: No such command teleport".to_owned()
    );
    // Bad arguments are checked as for a socket.
    let e = api
        .exec_user_command(as_user("alice"), "roomCreate", vec![])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongArgumentsCount);
}
