import Actors
import Matrix
import Transport

/// Downloads one remote media file into the content store: the signed
/// `GET /_matrix/federation/v1/media/download/{mediaId}` (Matrix 1.11), its `multipart/mixed`
/// answer parsed as it streams (`MultipartMixedParser`), the file part written through a
/// `MediaUploadActor` (temporary file, SHA-256, `media.max_upload_bytes`, atomic commit) or a
/// `Location` part followed with a plain GET through the same HTTP client (its IP blacklist,
/// redirects checked again). A server without the federation endpoint (404
/// `M_UNRECOGNIZED`, or 400) is asked the legacy
/// `/_matrix/media/v3/download/{server}/{id}?allow_remote=false&allow_redirect=true`.
/// Errors follow Synapse: the media does not exist → 404 `M_NOT_FOUND`; the server cannot be
/// reached or answers nonsense → 502 `M_UNKNOWN`; over the size limit → 502 `M_TOO_LARGE`.
/// Used by `FederationMediaSource`, which records the result.
struct RemoteMediaFetcher: Sendable {
    let client: @Sendable () throws -> FederationClient
    let files: MediaFileStore
    let maxBytes: Int64
    /// The JSON metadata part and error bodies are read whole; at most this much.
    static let maxSmallBody = 64 * 1024

    struct Fetched: Sendable {
        var stored: MediaUploadActor.Stored
        var contentType: String?
        var fileName: String?
    }

    func fetch(server: ServerName, mediaID: String) async throws -> Fetched {
        let client: FederationClient
        do { client = try self.client() } catch { throw Self.unreachable("no federation client: \(error)") }
        let path = "/_matrix/federation/v1/media/download/\(mediaID)?timeout_ms=20000"
        let response = try await Self.mapping { try await client.streamingGet(server, path: path, signed: true, maxBytes: httpLimit) }
        if response.status == 200 {
            return try await Self.mapping { try await readMultipart(response, client: client) }
        }
        let (status, errcode) = await Self.errorOf(response)
        // Servers older than Matrix 1.11 do not route the federation path.
        if (status == 404 && errcode != "M_NOT_FOUND") || status == 400 || status == 405 {
            return try await legacy(server: server, mediaID: mediaID, client: client)
        }
        throw Self.failure(status: status, errcode: errcode)
    }

    var httpLimit: Int { Int(min(maxBytes, Int64(Int.max / 2))) + Self.maxSmallBody }

    /// `/_matrix/media/v3/download/{server}/{id}?allow_remote=false&allow_redirect=true`.
    private func legacy(server: ServerName, mediaID: String, client: FederationClient) async throws -> Fetched {
        let path = "/_matrix/media/v3/download/\(server.rawValue)/\(mediaID)?allow_remote=false&allow_redirect=true"
        var response = try await Self.mapping { try await client.streamingGet(server, path: path, signed: false, maxBytes: httpLimit) }
        if [301, 302, 303, 307, 308].contains(response.status), let location = response.headers["Location"] {
            _ = try? await response.body.collect()
            response = try await Self.mapping { try await client.plainGet(url: location, maxBytes: httpLimit) }
        }
        guard response.status == 200 else {
            let (status, errcode) = await Self.errorOf(response)
            throw Self.failure(status: status, errcode: errcode)
        }
        return try await Self.mapping { try await store(response.body, headers: response.headers) }
    }

    /// Reads the two parts; the second is stored (or its `Location` followed).
    private func readMultipart(_ response: HTTPClientResponse, client: FederationClient) async throws -> Fetched {
        guard let type = response.headers["Content-Type"] else { throw Self.unreachable("download answer without Content-Type") }
        var parser = try MultipartMixedParser(contentType: type)
        var part = 0
        var metadata = 0
        var upload: MediaUploadActor?
        var fileHeaders: HTTPHeaders?
        var location: String?
        do {
            for try await chunk in response.body {
                for event in try parser.feed(chunk) {
                    switch event {
                    case .partHead(let headers):
                        part += 1
                        guard part <= 2 else { throw Self.unreachable("more than two parts") }
                        if part == 2 {
                            if let url = headers["Location"] { location = url } else {
                                fileHeaders = headers
                                upload = MediaUploadActor(id: "remote-download", files: files)
                            }
                        }
                    case .body(let bytes):
                        if part == 1 {
                            metadata += bytes.count
                            guard metadata <= Self.maxSmallBody else { throw Self.unreachable("metadata part too large") }
                        } else if let upload {
                            try await upload.append(bytes, limit: maxBytes)
                        }
                    case .partEnd, .end:
                        break
                    }
                }
                if parser.isDone { break }
            }
            try parser.finish()
            guard part == 2 else { throw Self.unreachable("the download answer lacks the file part") }
            if let location {
                let followed = try await client.plainGet(url: location, maxBytes: httpLimit)
                guard followed.status == 200 else {
                    let (status, errcode) = await Self.errorOf(followed)
                    throw Self.failure(status: status, errcode: errcode)
                }
                return try await store(followed.body, headers: followed.headers)
            }
            guard let upload, let fileHeaders else { throw Self.unreachable("no file part") }
            let stored = try await upload.finish(declaredLength: nil)
            return Fetched(stored: stored, contentType: Self.contentType(fileHeaders),
                           fileName: fileHeaders["Content-Disposition"].flatMap(ContentDisposition.fileName(of:)))
        } catch {
            await upload?.abort()
            throw error
        }
    }

    /// Streams a plain body (legacy download, a followed `Location`) into the content store.
    private func store(_ body: HTTPClientBody, headers: HTTPHeaders) async throws -> Fetched {
        let upload = MediaUploadActor(id: "remote-download", files: files)
        do {
            for try await chunk in body { try await upload.append(chunk, limit: maxBytes) }
            let stored = try await upload.finish(declaredLength: nil)
            return Fetched(stored: stored, contentType: Self.contentType(headers),
                           fileName: headers["Content-Disposition"].flatMap(ContentDisposition.fileName(of:)))
        } catch {
            await upload.abort()
            throw error
        }
    }

    static func contentType(_ headers: HTTPHeaders) -> String? {
        guard let type = headers["Content-Type"], !type.isEmpty, type.utf8.count <= 255 else { return nil }
        return type
    }

    /// The status and `errcode` of an answer that is not the media (its body read, bounded).
    static func errorOf(_ response: HTTPClientResponse) async -> (Int, String?) {
        var bytes: [UInt8] = []
        do {
            for try await chunk in response.body {
                bytes += chunk.prefix(maxSmallBody - bytes.count)
                if bytes.count >= maxSmallBody { break }
            }
        } catch {}
        return (response.status, (try? JSON.parse(bytes))?["errcode"]?.stringValue)
    }

    static func failure(status: Int, errcode: String?) -> MatrixError {
        if status == 404 { return MatrixError(.notFound, "Media not found on its server") }
        if errcode == "M_TOO_LARGE" || status == 413 { return MatrixError(.tooLarge, "Remote media is too large", status: 502) }
        if status == 504 || errcode == "M_NOT_YET_UPLOADED" {
            return MatrixError("M_NOT_YET_UPLOADED", "Remote media is not uploaded yet", status: 504)
        }
        return unreachable("the remote server answered \(status) \(errcode ?? "")")
    }

    static func unreachable(_ why: String) -> MatrixError {
        MatrixError(.unknown, "Failed to fetch remote media: \(why)", status: 502)
    }

    /// Transport and parser failures as Matrix errors (502); a Matrix error passes, except
    /// the upload limit's 413, which for remote media is 502 `M_TOO_LARGE` (spec).
    static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as MatrixError {
            if error.code == .tooLarge { throw MatrixError(.tooLarge, error.message, status: 502) }
            throw error
        } catch let error as FederationRequestError {
            if error.kind == .tooLarge { throw MatrixError(.tooLarge, "Remote media is too large", status: 502) }
            throw unreachable(error.description)
        } catch let error as HTTPClientError {
            if error.kind == .tooLarge { throw MatrixError(.tooLarge, "Remote media is too large", status: 502) }
            throw unreachable(error.description)
        } catch let error as MultipartMixedParser.Failure {
            throw unreachable(error.description)
        }
    }
}

/// The file name of a `Content-Disposition` field (RFC 6266): `filename*` (RFC 8187,
/// `UTF-8''percent-encoded`) preferred over `filename` (a token or a quoted string).
enum ContentDisposition {
    static func fileName(of field: String) -> String? {
        var plain: String?
        var extended: String?
        for parameter in parameters(field) {
            switch parameter.name {
            case "filename*":
                let value = parameter.value
                guard let quote = value.firstRange(of: "''") else { continue }
                guard value[..<quote.lowerBound].lowercased() == "utf-8" else { continue }
                extended = percentDecoded(value[quote.upperBound...])
            case "filename":
                plain = parameter.value
            default: continue
            }
        }
        guard let name = extended ?? plain, !name.isEmpty, name.utf8.count <= 1024,
              !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return nil }
        return name
    }

    /// `; name=value` pairs after the disposition type; quoted values unescaped.
    static func parameters(_ field: String) -> [(name: String, value: String)] {
        var result: [(name: String, value: String)] = []
        let scalars = Array(field.unicodeScalars.prefix(4096))
        var i = scalars.firstIndex(of: ";") ?? scalars.count
        while i < scalars.count {
            i += 1
            while i < scalars.count && (scalars[i] == " " || scalars[i] == "\t") { i += 1 }
            var name = ""
            while i < scalars.count && scalars[i] != "=" && scalars[i] != ";" { name.unicodeScalars.append(scalars[i]); i += 1 }
            guard i < scalars.count, scalars[i] == "=" else { continue }
            i += 1
            var value = ""
            if i < scalars.count && scalars[i] == "\"" {
                i += 1
                while i < scalars.count && scalars[i] != "\"" {
                    if scalars[i] == "\\" && i + 1 < scalars.count { i += 1 }
                    value.unicodeScalars.append(scalars[i])
                    i += 1
                }
                while i < scalars.count && scalars[i] != ";" { i += 1 }
            } else {
                while i < scalars.count && scalars[i] != ";" { value.unicodeScalars.append(scalars[i]); i += 1 }
                while value.hasSuffix(" ") { value.removeLast() }
            }
            while name.hasSuffix(" ") { name.removeLast() }
            result.append((name.lowercased(), value))
        }
        return result
    }

    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == 0x25 {
                guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
