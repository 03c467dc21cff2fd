extension ServerKeyStore {
    /// The row name of a response kept for one of its key ids. A server name never contains
    /// a space, so these rows never collide with a server's latest response (`response(of:)`).
    static func rowName(_ server: String, keyID: String) -> String { server + " " + keyID }

    /// Records `response` as the latest one listing each of `keyIDs` (the notary's memory, as
    /// Synapse's `server_keys_json` by key id): a later response of the server that no longer
    /// lists a key does not make the notary forget the response that did (Synapse #5305).
    public func saveResponse(_ response: Response, forKeys keyIDs: [String]) async throws {
        try await database.write { db in
            for keyID in keyIDs {
                try db.execute("""
                    INSERT INTO server_key_responses (server_name, valid_until_ts, fetched_ts, response_json) VALUES (?, ?, ?, ?)
                    ON CONFLICT (server_name) DO UPDATE SET valid_until_ts = excluded.valid_until_ts,
                        fetched_ts = excluded.fetched_ts, response_json = excluded.response_json
                    """, .text(Self.rowName(response.serverName, keyID: keyID)), .int(response.validUntilTS),
                    .int(response.fetchedTS), .blob(response.json))
            }
        }
    }

    /// The latest stored response of `server` that listed `keyID`, if any.
    public func response(of server: String, keyID: String) async throws -> Response? {
        guard var found = try await response(of: Self.rowName(server, keyID: keyID)) else { return nil }
        found.serverName = server
        return found
    }
}
