use serde_json::json;

use super::*;

fn flow(document: Value) -> Flow {
    Flow::parse(document.as_object().unwrap()).unwrap()
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn say(engine: &mut FlowEngine, text: &str) -> Reply {
    engine.answer(EngineInput::UserTurn { text: text.into() })
}

/// The demo's flow: greet by name, ask yes or no, branch, confirm, end.
fn appointment() -> Value {
    json!({
        "start_node_id": "greet",
        "default_dynamic_variables": {"name": "there"},
        "nodes": [
            {"id": "greet", "type": "conversation", "instruction": {"type": "static_text", "text": "Hi {{name}}, this is the dental office. Can you come on Tuesday?"},
             "edges": [
                {"id": "e1", "transition_condition": {"type": "prompt", "prompt": "User said yes"}, "destination_node_id": "confirm"},
                {"id": "e2", "transition_condition": {"type": "prompt", "prompt": "User said no"}, "destination_node_id": "other_day"}]},
            {"id": "other_day", "type": "conversation", "instruction": {"type": "prompt", "text": "Which day suits you better?"},
             "edges": [{"id": "e3", "transition_condition": {"type": "prompt", "prompt": "User mentions \"Wednesday\" or \"next week\""}, "destination_node_id": "confirm"}],
             "else_edge": {"id": "e4", "transition_condition": {"type": "prompt", "prompt": "Else"}, "destination_node_id": "bye"}},
            {"id": "confirm", "type": "conversation", "instruction": {"type": "static_text", "text": "Great, you are booked."},
             "skip_response_edge": {"id": "e5", "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": "bye"}},
            {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye {{name}}."}}
        ]
    })
}

#[test]
fn yes_confirms_and_the_skip_response_edge_says_goodbye_and_ends_in_one_reply() {
    let mut engine = FlowEngine::new(flow(appointment()), vars(&[("name", "Ada")]), None);
    assert_eq!(engine.answer(EngineInput::Begin).text, "Hi Ada, this is the dental office. Can you come on Tuesday?");
    let reply = say(&mut engine, "Yes, that works for me.");
    assert_eq!(reply.text, "Great, you are booked. Goodbye Ada.");
    assert!(reply.end_call);
}

#[test]
fn no_branches_elsewhere_and_a_keyword_or_the_else_edge_moves_on() {
    let mut engine = FlowEngine::new(flow(appointment()), HashMap::new(), None);
    assert!(engine.answer(EngineInput::Begin).text.starts_with("Hi there,"), "the flow's default variable");
    assert_eq!(say(&mut engine, "No, I can't make it.").text, "Which day suits you better?");
    assert_eq!(say(&mut engine, "Maybe next week then").text, "Great, you are booked. Goodbye there.");
    let mut engine = FlowEngine::new(flow(appointment()), HashMap::new(), Some("other_day"));
    let reply = say(&mut engine, "I really do not know");
    assert_eq!((reply.text.as_str(), reply.end_call), ("Goodbye there.", true), "the else edge");
}

#[test]
fn a_turn_that_matches_nothing_without_an_else_edge_is_asked_again() {
    let mut engine = FlowEngine::new(flow(appointment()), HashMap::new(), None);
    engine.answer(EngineInput::Begin);
    let reply = say(&mut engine, "What is the weather like?");
    assert_eq!(reply.text, "Hi there, this is the dental office. Can you come on Tuesday?");
    assert_eq!(engine.current_node(), "greet");
}

#[test]
fn dtmf_and_spoken_digits_match_press_prompts() {
    let menu = json!({"nodes": [
        {"id": "menu", "type": "conversation", "instruction": {"type": "static_text", "text": "Press 1 for sales, 2 for support."},
         "edges": [
            {"id": "a", "transition_condition": {"type": "prompt", "prompt": "User pressed 1"}, "destination_node_id": "sales"},
            {"id": "b", "transition_condition": {"type": "prompt", "prompt": "User presses 2"}, "destination_node_id": "support"}]},
        {"id": "sales", "type": "end", "instruction": {"type": "static_text", "text": "Sales."}},
        {"id": "support", "type": "transfer_call", "transfer_destination": {"type": "predefined", "number": "+14155550199"},
         "instruction": {"type": "static_text", "text": "Transferring you."}}
    ]});
    let mut engine = FlowEngine::new(flow(menu.clone()), HashMap::new(), None);
    engine.answer(EngineInput::Begin);
    let reply = engine.answer(EngineInput::Dtmf { digit: '2' });
    assert_eq!((reply.text.as_str(), reply.transfer_to.as_deref()), ("Transferring you.", Some("+14155550199")));
    let mut engine = FlowEngine::new(flow(menu), HashMap::new(), None);
    engine.answer(EngineInput::Begin);
    assert_eq!(say(&mut engine, "one please").text, "Sales.");
}

#[test]
fn a_branch_start_node_routes_on_an_equation_over_a_dynamic_variable() {
    let tiers = json!({"start_node_id": "route", "nodes": [
        {"id": "route", "type": "branch",
         "edges": [
            {"id": "vip", "transition_condition": {"type": "equation", "operator": "&&", "equations": [{"left": "{{tier}}", "operator": ">=", "right": "10"}]}, "destination_node_id": "vip"},
            {"id": "named", "transition_condition": {"type": "equation", "operator": "||", "equations": [
                {"left": "{{name}}", "operator": "exists"}, {"left": "{{company}}", "operator": "contains", "right": "acme"}]}, "destination_node_id": "named"}],
         "else_edge": {"id": "else", "transition_condition": {"type": "prompt", "prompt": "Else"}, "destination_node_id": "anyone"}},
        {"id": "vip", "type": "conversation", "instruction": {"type": "static_text", "text": "Welcome back, valued customer."}},
        {"id": "named", "type": "conversation", "instruction": {"type": "static_text", "text": "Hello {{name}}."}},
        {"id": "anyone", "type": "conversation", "instruction": {"type": "static_text", "text": "Hello."}}
    ]});
    let begin = |pairs: &[(&str, &str)]| FlowEngine::new(flow(tiers.clone()), vars(pairs), None).answer(EngineInput::Begin).text;
    // Compared as numbers: "9" < "10" although "9" > "10" as text.
    assert_eq!(begin(&[("tier", "12")]), "Welcome back, valued customer.");
    assert_eq!(begin(&[("tier", "9")]), "Hello.");
    assert_eq!(begin(&[("tier", "9"), ("name", "Ada")]), "Hello Ada.");
    assert_eq!(begin(&[("company", "ACME corp")]), "Hello {{name}}.", "unknown variables stay as written");
    assert_eq!(begin(&[]), "Hello.");
}

#[test]
fn the_offline_matcher_is_the_documented_one() {
    let turn = |text: &str| EngineInput::UserTurn { text: text.into() };
    assert!(matches_prompt("User said yes", &turn("Yeah sure.")));
    assert!(!matches_prompt("User said yes", &turn("No, not really.")));
    assert!(matches_prompt("User declines", &turn("no thanks")));
    assert!(!matches_prompt("User said no", &turn("yes")));
    assert!(matches_prompt("User mentions \"Tuesday\" or \"next week\"", &turn("How about next week?")));
    assert!(!matches_prompt("User mentions \"Tuesday\"", &turn("Tuesdays are bad")), "whole words");
    assert!(matches_prompt("User pressed 3", &EngineInput::Dtmf { digit: '3' }));
    assert!(!matches_prompt("User pressed 3", &EngineInput::Dtmf { digit: '4' }));
    assert!(!matches_prompt("User wants to buy a car", &turn("I want to buy a car")), "needs an LLM");
}

#[test]
fn flows_that_do_not_hold_together_are_refused_naming_the_field() {
    let bad = |document: Value| Flow::parse(document.as_object().unwrap()).unwrap_err();
    assert_eq!(bad(json!({"nodes": []})).field, "nodes");
    assert_eq!(bad(json!({"nodes": [{"id": "a", "type": "conversation", "edges": [{"id": "e", "transition_condition": {"type": "prompt", "prompt": "x"}, "destination_node_id": "zz"}]}]})).field, "nodes[0]");
    assert_eq!(bad(json!({"start_node_id": "b", "nodes": [{"id": "a", "type": "end"}]})).field, "start_node_id");
    assert_eq!(bad(json!({"nodes": [{"id": "a", "type": "warp"}]})).field, "nodes[0].type");
    assert_eq!(
        bad(json!({"nodes": [{"id": "a", "type": "branch", "edges": [{"id": "e", "transition_condition": {"type": "equation", "operator": "&&", "equations": [{"left": "1", "operator": "~"}]}, "destination_node_id": "a"}]}]})).field,
        "nodes[0].edges[0].transition_condition.equations[0].operator"
    );
    assert_eq!(bad(json!({"nodes": [{"id": "a", "type": "end"}, {"id": "a", "type": "end"}]})).field, "nodes[1].id");
}

#[test]
fn a_loop_of_skip_response_edges_is_cut() {
    let looping = json!({"nodes": [
        {"id": "a", "type": "conversation", "instruction": {"type": "static_text", "text": "a"}, "skip_response_edge": {"id": "x", "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": "b"}},
        {"id": "b", "type": "conversation", "instruction": {"type": "static_text", "text": "b"}, "skip_response_edge": {"id": "y", "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": "a"}}
    ]});
    let reply = FlowEngine::new(flow(looping), HashMap::new(), None).answer(EngineInput::Begin);
    assert_eq!(reply.text.split(' ').count(), MAX_HOPS);
}
