//! Sets the link arguments a Node addon needs (napi symbols resolve inside the node process).

fn main() {
    napi_build::setup();
}
