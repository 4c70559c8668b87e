//! wsgate mapper component: Binance `trade` payloads with one extra field,
//! `"mapper":"tagged_trade"`, so a client can tell which mapper version produced each message.
//! A second format of the same stream for hot-swap and rollback drills.

/// [`demo_events::map::trade::map`], each payload tagged.
fn map(payload: &[u8]) -> Result<Vec<demo_events::Output>, demo_events::MapError> {
    let mut outputs = demo_events::map::trade::map(payload)?;
    for output in &mut outputs {
        // Every trade payload is a JSON object: replace its closing brace.
        output.payload.pop();
        output.payload.push_str(r#","mapper":"tagged_trade"}"#);
    }
    Ok(outputs)
}

demo_events::binance_mapper!(map);
