// libFuzzer entry point for the JSON parser; built by scripts/fuzz-json.sh together with the
// Matrix sources. Any input must parse or throw M_NOT_JSON; parsed values must round-trip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let value = try? JSON.parse(bytes) else { return 0 }
    guard let again = try? JSON.parse(value.encoded()), again == value else { fatalError("round trip changed the value") }
    if let canonical = try? value.canonicalEncoded() {
        guard let re = try? JSON.parse(canonical), (try? re.canonicalEncoded()) == canonical else {
            fatalError("canonical form is not stable")
        }
    }
    return 0
}
