import Glibc
import Synchronization

/// Ports this test process already handed out: two servers of one run never get the same one.
private let handedOut = Mutex<Set<Int>>([])

/// A TCP port on 127.0.0.1 that nothing listens on, for a server started later whose name or
/// configuration carries the port.
///
/// It is picked below the kernel's ephemeral range (`ip_local_port_range`): a port from that
/// range, bound and released, could be taken as the source port of one of the suite's many
/// outgoing connections before the server binds it, and the server would then fail to start.
public func freeTCPPort() -> Int {
    let ephemeralLow = ephemeralRangeStart()
    let low = 10_000
    if ephemeralLow > low + 1_000 {
        for _ in 0..<200 {
            let candidate = Int.random(in: low..<ephemeralLow)
            let fresh = handedOut.withLock { $0.insert(candidate).inserted }
            if fresh, canBind(candidate) { return candidate }
        }
    }
    // A system whose ephemeral range starts low: the kernel's pick, as a last resort.
    return kernelPickedPort()
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
private func ephemeralRangeStart() -> Int {
    guard let file = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r") else { return 32_768 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 64)
    guard fgets(&line, Int32(line.count), file) != nil else { return 32_768 }
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32_768
}

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return address
}

private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = loopback(port: port)
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } } == 0
}

private func kernelPickedPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = loopback(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
