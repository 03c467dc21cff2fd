/// The commented configuration file that `myelin generate-config` prints: every key with
/// its default, so the file documents itself and loads back to the defaults. Written as one
/// section per part of the file, in the order the file lists them.
enum ConfigurationTemplate {
    static func render(serverName: String) -> String {
        let d = Configuration()
        return [general(d, serverName: serverName), transport(d), actors(d), accounts(d), rateLimits(d), services(d), voice(d), voip(d)].joined()
    }

    private static func general(_ d: Configuration, serverName: String) -> String {
        return """
        # Myelin configuration. Every key is optional; the values shown are the defaults.
        # Unknown keys and bad values stop the server with the key path named.

        # The server name: the part after ':' in user IDs (@alice:\(serverName)). It cannot change later.
        server_name: \(serverName)

        # Where the database, signing key and media live (relative to the working directory).
        data_dir: \(d.dataDirectory)

        # The ed25519 signing key; empty means <data_dir>/signing.key (created on first start).
        signing_key_path: ""

        # The version of rooms created without "room_version" (1 to 12).
        default_room_version: "\(d.defaultRoomVersion)"

        # Where clients and other servers connect. Plain HTTP unless a listener has "tls":
        # then it serves the whole API over HTTPS (TLS 1.2 minimum) with the certificate
        # chain (leaf first) and private key given, both PEM, re-read on SIGHUP. For example
        # a federation listener:
        #   - host: 0.0.0.0
        #     port: 8448
        #     tls: {certificate: /etc/myelin/fullchain.pem, private_key: /etc/myelin/key.pem}
        listeners:
          - host: \(d.listeners[0].host)
            port: \(d.listeners[0].port)

        database:
          # sqlite (embedded, no server needed) or postgres
          backend: \(d.database.backend.rawValue)
          sqlite:
            # empty means <data_dir>/myelin.db
            path: ""
            # reader connections (one writer connection besides)
            readers: \(d.database.sqliteReaders)
            # WAL pages not yet written back that start a background checkpoint (its own
            # connection and thread; no commit waits on it); 0 leaves it to SQLite, inside the
            # commit that passes 1,000 pages
            checkpoint_pages: \(d.database.sqliteOptions.checkpointPages)
            # normal: a commit survives a crash of the process, and power loss once the next
            # checkpoint has synced it; full: each commit syncs the WAL (power-loss durable)
            synchronous: \(d.database.sqliteOptions.synchronous.rawValue)
          postgres:
            # a libpq connection string
            conninfo: "\(d.database.postgresConninfo)"
            pool_size: \(d.database.postgresPoolSize)


        """
    }

    private static func transport(_ d: Configuration) -> String {
        let t = d.transport
        return """
        transport:
          # event loops (threads); 0 means one per core
          loops: 0
          # where request handlers run: loops (on the loop thread that read the request: no
          # hand-over between threads, the least CPU per request) or workers (on a pool of
          # `workers` threads: a handler that computes for long holds up one worker instead
          # of the other connections of its loop)
          handlers: \(t.handlers.rawValue)
          # threads that run request handlers with handlers: workers; 0 means one per core
          workers: 0
          backlog: \(t.backlog)
          # request line + headers, past it 431
          max_header_bytes: \(t.maxHeaderBytes)
          # a JSON request body, past it 413 M_TOO_LARGE
          max_json_body_bytes: \(t.maxJSONBodyBytes)
          # a media upload
          max_media_body_bytes: \(t.maxMediaBodyBytes)
          max_connections: \(t.maxConnections)
          # open connections from one IPv4 address or IPv6 /64; past it new ones are closed
          # at accept (0: no limit). Loopback and rate_limits.trusted_proxies are exempt: a
          # reverse proxy carries every client on its own address.
          max_connections_per_ip: \(t.maxConnectionsPerIP)
          header_read_timeout_ms: \(t.headerReadTimeoutMs)
          # time from the end of a request's head until its whole body has arrived (not reset
          # by each read; time the server itself is too slow to read is not counted)
          body_read_timeout_ms: \(t.bodyReadTimeoutMs)
          # each body byte received adds 1/this second to that time, so a large upload
          # arriving at least this fast is not cut off (0: no extension)
          min_body_bytes_per_second: \(t.minBodyBytesPerSecond)
          # idle keep-alive connections are closed after this, and so are connections whose
          # peer reads none of the answers owed to it for this long
          idle_timeout_ms: \(t.idleTimeoutMs)
          # how long shutdown waits for requests in flight
          shutdown_grace_ms: \(t.shutdownGraceMs)
          # requests read ahead on one connection while one is answered
          max_pipelined: \(t.maxPipelined)
          # answers queued on one connection and not yet taken by its socket; past it the
          # connection reads no further requests until they drain below half
          max_unsent_output_bytes: \(t.maxUnsentOutputBytes)


        """
    }

    private static func actors(_ d: Configuration) -> String {
        let a = d.actors
        func pool(_ name: String, _ p: Configuration.ActorPool, _ what: String) -> String {
            """
              # \(what)
              \(name):
                max_resident: \(p.maxResident)
                idle_timeout_s: \(p.idleTimeoutSeconds)
            """
        }
        return """
        # Actor pools: how many of each kind stay resident, and how long an idle one lives.
        actors:
        \(pool("rooms", a.rooms, "one per room: its current state, extremities and recent events"))
        \(pool("sessions", a.sessions, "one per logged-in device"))
        \(pool("notifiers", a.notifiers, "one per user with long-polling /sync requests"))
        \(pool("federation_destinations", a.federationDestinations, "one per remote server we send to"))
        \(pool("media_uploads", a.mediaUploads, "one per upload in progress"))
          # recent events each room actor keeps in memory for caught-up syncs
          room_recent_events: \(a.roomRecentEvents)


        """
    }

    private static func accounts(_ d: Configuration) -> String {
        return """
        registration:
          # open registration (POST /register); false here, true when myelin runs with no file
          enabled: false
          # when set, registration is token-only (the m.login.registration_token stage)
          registration_token: ~
          # enables the Synapse admin shared-secret registration API when set
          shared_secret: ~
          # guest accounts (kind=guest)
          allow_guests: \(d.registration.allowGuests)
          # lifetime of access tokens issued with a refresh token (clients that ask for one)
          refreshable_access_token_lifetime_ms: \(d.registration.refreshableAccessTokenLifetimeMs)
          # lifetime of refresh tokens; 0 means they never expire
          refresh_token_lifetime_ms: \(d.registration.refreshTokenLifetimeMs)

        presence:
          # false: presence is neither stored nor served (PUT is accepted and ignored)
          enabled: \(d.presence.enabled)

        user_directory:
          # false: search finds users sharing a room with the searcher or in public rooms
          search_all_users: \(d.userDirectory.searchAllUsers)


        """
    }

    private static func rateLimits(_ d: Configuration) -> String {
        return """
        rate_limits:
          enabled: \(d.rateLimits.enabled)
          messages:
            per_second: \(d.rateLimits.messages.perSecond)
            burst: \(d.rateLimits.messages.burst)
          login:
            per_second: \(d.rateLimits.login.perSecond)
            burst: \(d.rateLimits.login.burst)
          registration:
            per_second: \(d.rateLimits.registration.perSecond)
            burst: \(d.rateLimits.registration.burst)
          # typing notifications, receipts and read markers, per user
          ephemeral:
            per_second: \(d.rateLimits.ephemeral.perSecond)
            burst: \(d.rateLimits.ephemeral.burst)
          # PUT /presence, per user
          presence:
            per_second: \(d.rateLimits.presence.perSecond)
            burst: \(d.rateLimits.presence.burst)
          # send-to-device requests, per user
          to_device:
            per_second: \(d.rateLimits.toDevice.perSecond)
            burst: \(d.rateLimits.toDevice.burst)
          # display name and avatar changes (each a member event in every joined room)
          profile:
            per_second: \(d.rateLimits.profile.perSecond)
            burst: \(d.rateLimits.profile.burst)
          # cross-signing key and signature uploads, per user
          key_uploads:
            per_second: \(d.rateLimits.keyUploads.perSecond)
            burst: \(d.rateLimits.keyUploads.burst)
          # reverse proxies whose X-Forwarded-For header names the client (e.g. - 127.0.0.1);
          # limits per address then apply to the client, not to the proxy
          trusted_proxies: []

        # the admin API's security extension (docs/admin.md, "Security"); IP blocks themselves
        # are managed with POST /_synapse/admin/v1/security/ip/block and stored in the database
        security:
          # rows kept in the security event log (GET /_synapse/admin/v1/security/events)
          event_log_capacity: \(d.security.eventLogCapacity)
          # an address's reputation penalty halves every this many seconds
          reputation_half_life_seconds: \(d.security.reputationHalfLifeSeconds)
          # block an address automatically when its reputation score (0-100) reaches this; 0: never
          auto_block_score: \(d.security.autoBlockScore)
          auto_block_duration_seconds: \(d.security.autoBlockDurationSeconds)
          # registration needs a registration token (Synapse's registration_requires_token)
          registration_requires_token: \(d.security.registrationRequiresToken)
          # Argon2id cost of new password hashes: interactive (2 passes over 64 MiB), moderate,
          # sensitive, or minimum (benchmarks creating thousands of accounts only: not for real
          # passwords). Stored hashes keep the cost they were made with.
          password_hash_cost: \(d.security.passwordHashCost.rawValue)


        """
    }

    private static func services(_ d: Configuration) -> String {
        return """
        media:
          # empty means <data_dir>/media
          store_path: ""
          max_upload_bytes: \(d.media.maxUploadBytes)
          thumbnails: \(d.media.thumbnails)
          # as Synapse's option of that name: media uploaded while this is on is served only by
          # the authenticated /_matrix/client/v1/media paths; the legacy unauthenticated
          # /_matrix/media/v3 downloads answer 404 for it (media stored before stays served)
          enable_authenticated_media: \(d.media.enableAuthenticatedMedia)
          # ids reserved by POST /_matrix/media/v1/create and not yet uploaded, per user
          max_pending_uploads: \(d.media.maxPendingUploads)
          # how long such an id waits for its upload
          pending_upload_expiry_ms: \(d.media.pendingUploadExpiryMs)
          # bytes of other servers' media kept in the cache, least recently used evicted
          # first (0: no limit)
          remote_cache_max_bytes: \(d.media.remoteCacheMaxBytes)
        \(urlPreview(d))
        \(thumbnailing(d.media.thumbnailing))

        # Push notifications: /notifications and HTTP pushers (docs/push.md). Pusher URLs
        # may be any address, loopback and private included, as in Synapse.
        push:
          # the full push format carries the event's content
          include_content: \(d.push.includeContent)
          # days of /notifications kept
          notification_retention_days: \(d.push.notificationRetentionDays)
          # retry delays of an unreachable push gateway: doubled per failure, capped; a
          # notification failing at the cap is dropped
          backoff_initial_ms: \(d.push.backoffInitialMs)
          backoff_max_ms: \(d.push.backoffMaxMs)
          max_queued_per_pusher: \(d.push.maxQueuedPerPusher)

        # Server notices (POST /_synapse/admin/v1/send_server_notice, docs/admin.md): each
        # user's notices arrive in a room of their own, sent by this system user.
        server_notices:
          enabled: \(d.serverNotices.enabled)
          system_mxid_localpart: \(d.serverNotices.systemMXIDLocalpart)
          system_mxid_display_name: \(d.serverNotices.systemMXIDDisplayName ?? "")
          room_name: \(d.serverNotices.roomName)
          # optional: system_mxid_avatar_url, room_avatar_url (mxc:// URIs), room_topic
          # join the user to the room instead of inviting them
          auto_join: \(d.serverNotices.autoJoin)

        federation:
          enabled: \(d.federation.enabled)
          # retry delays of an unreachable server: doubled per failure, with jitter, capped
          backoff_initial_ms: \(d.federation.backoffInitialMs)
          backoff_max_ms: \(d.federation.backoffMaxMs)
          # notaries asked for server keys that a server does not serve itself
          trusted_key_servers: [\(d.federation.trustedKeyServers.map { "\"\($0)\"" }.joined(separator: ", "))]
          # outbound TLS: verify certificates (system store plus these CA files); false for tests only
          verify_certificates: \(d.federation.verifyCertificates)
          extra_ca_files: []
          # ranges opened in the outbound blacklist (loopback, private, link-local are refused), e.g. 127.0.0.0/8
          ip_range_whitelist: []
          # when not empty, the only servers federation talks to
          domain_whitelist: []

        # Served at /.well-known/matrix/client and /server; empty means not served (404).
        well_known:
          client_base_url: ""
          server: ""

        logging:
          # trace, debug, info, notice, warning, error, critical
          level: \(d.logging.level)
          access_log: \(d.logging.accessLog)

        metrics:
          enabled: \(d.metrics.enabled)
          path: \(d.metrics.path)

        # The admin page in a browser at /_myelin/admin/ (sign in with an admin account).
        # Its files are read from `directory` at start (relative to the working directory).
        admin_page:
          enabled: \(d.adminPage.enabled)
          directory: \(d.adminPage.directory)

        """
    }
}
