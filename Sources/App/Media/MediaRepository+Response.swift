import Matrix
import Persistence
import Transport

extension MediaRepository {
    /// The content types a browser may render in place (spec: "Serving inline content";
    /// Synapse's `INLINE_CONTENT_TYPES`). Everything else is served as an attachment, so
    /// that an uploaded HTML or SVG file never runs as a page of the homeserver's origin.
    static let inlineContentTypes: Set<String> = [
        "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
        "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
        "video/mp4", "video/webm", "video/ogg", "video/quicktime",
        "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
        "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
    ]

    /// What the spec and Synapse send with every media body: the content cannot script the
    /// homeserver's origin even if a browser renders it, and other origins may embed it.
    static let contentSecurityPolicy =
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

    /// The response for a stored file: streamed from `path` by the transport's file sender,
    /// with Content-Type, Content-Disposition (`fileName` overrides the uploaded name),
    /// CSP, CORP, Cache-Control and byte ranges (206 / 416). Used by downloads,
    /// thumbnails and voice.
    func downloadResponse(record: MediaRecord, path: String, fileName: String?, request: HTTPRequest) -> HTTPResponse {
        let size = max(0, record.size)
        let contentType = record.contentType.flatMap { $0.isEmpty ? nil : $0 } ?? "application/octet-stream"
        var headers = HTTPHeaders()
        headers.add("Content-Disposition", Self.contentDisposition(contentType: contentType,
                                                                   fileName: fileName ?? record.uploadName))
        headers.add("Content-Security-Policy", Self.contentSecurityPolicy)
        headers.add("Cross-Origin-Resource-Policy", "cross-origin")
        headers.add("X-Content-Type-Options", "nosniff")
        // Content never changes under its id. Authenticated responses are not for shared caches.
        let authenticated = request.head.path.hasPrefix("/_matrix/client/")
        headers.add("Cache-Control", authenticated ? "private, max-age=31536000, immutable" : "public, max-age=86400, s-maxage=86400")
        headers.add("Accept-Ranges", "bytes")
        var response = HTTPResponse(status: 200, headers: headers, body: .file(path: path, offset: 0, length: size))
        response.contentType = contentType
        guard let rangeHeader = request.headers["Range"] else { return response }
        switch Self.byteRange(rangeHeader, size: size) {
        case .whole:
            return response
        case .unsatisfiable:
            response.status = 416
            response.headers.add("Content-Range", "bytes */\(size)")
            response.body = .empty
            return response
        case .part(let first, let last):
            response.status = 206
            response.headers.add("Content-Range", "bytes \(first)-\(last)/\(size)")
            response.body = .file(path: path, offset: first, length: last - first + 1)
            return response
        }
    }

    /// `inline` for the safe types, `attachment` otherwise, with the file name as RFC 6266
    /// wants it: a quoted `filename` when it is plain printable ASCII, else
    /// `filename*=utf-8''` with the UTF-8 bytes percent-encoded (RFC 5987).
    static func contentDisposition(contentType: String, fileName: String?) -> String {
        let essence = contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.trimmingASCIIWhitespace().lowercased()
        } ?? ""
        let disposition = inlineContentTypes.contains(essence) ? "inline" : "attachment"
        guard let fileName, !fileName.isEmpty else { return disposition }
        let plain = fileName.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        if plain { return "\(disposition); filename=\"\(fileName)\"" }
        return "\(disposition); filename*=utf-8''\(rfc5987(fileName))"
    }

    /// Percent-encodes all but RFC 5987's `attr-char`s.
    static func rfc5987(_ text: String) -> String {
        let allowed = Set("!#$&+-.^_`|~".utf8)
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            let alnum = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
            if alnum || allowed.contains(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xf)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    enum ByteRange: Equatable {
        case whole
        case part(first: Int64, last: Int64)
        case unsatisfiable
    }

    /// One `bytes=first-last`, `bytes=first-` or `bytes=-suffix` range (RFC 9110 14.1.2).
    /// A header that does not parse, or asks for several ranges, gets the whole body (the
    /// RFC lets a server ignore Range); numbers are at most 18 digits (no overflow).
    static func byteRange(_ header: String, size: Int64) -> ByteRange {
        let text = header.trimmingASCIIWhitespace()
        guard text.hasPrefix("bytes="), !text.contains(",") else { return .whole }
        let spec = text.dropFirst(6)
        guard let dash = spec.firstIndex(of: "-") else { return .whole }
        let firstText = spec[..<dash].trimmingASCIIWhitespace(), lastText = spec[spec.index(after: dash)...].trimmingASCIIWhitespace()
        func number(_ s: String) -> Int64? {
            guard !s.isEmpty, s.utf8.count <= 18, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return Int64(s)
        }
        if firstText.isEmpty {
            guard let suffix = number(lastText) else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part(first: max(0, size - suffix), last: size - 1)
        }
        guard let first = number(firstText) else { return .whole }
        var last = size - 1
        if !lastText.isEmpty {
            guard let l = number(lastText), l >= first else { return .whole }
            last = min(l, size - 1)
        }
        guard first < size else { return .unsatisfiable }
        return .part(first: first, last: last)
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    func trimmingASCIIWhitespace() -> String {
        let bytes = Array(utf8)
        var start = 0, end = bytes.count
        while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
        while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}
