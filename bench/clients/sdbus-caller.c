/*
 * sdbus-caller: method calls through a bus with sd-bus, the client library of systemd, logind
 * and the services a distribution ships (the bench's other neutral clients use libdbus).
 *
 *   sdbus-caller ADDRESS DESTINATION COUNT
 *
 * Connects to ADDRESS as a bus client (Hello; unix fd passing negotiated, as sd-bus does by
 * default), then makes COUNT calls to DESTINATION, one in flight, each with a string argument,
 * and waits for each reply. Prints "done COUNT" on success; exits 1 at the first failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: sdbus-caller ADDRESS DESTINATION COUNT\n");
                return 2;
        }
        const char *address = argv[1], *destination = argv[2];
        long count = strtol(argv[3], NULL, 10);
        sd_bus *bus = NULL;
        int r = sd_bus_new(&bus);
        if (r >= 0) r = sd_bus_set_address(bus, address);
        if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
        if (r >= 0) r = sd_bus_negotiate_fds(bus, 1);
        if (r >= 0) r = sd_bus_start(bus);
        if (r < 0) {
                fprintf(stderr, "sdbus-caller: cannot connect to %s: %s\n", address, strerror(-r));
                return 1;
        }
        for (long i = 0; i < count; i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus_message *reply = NULL;
                r = sd_bus_call_method(bus, destination, "/", "com.example.Bench", "Ping", &error, &reply, "s", "hello, world!");
                if (r < 0) {
                        fprintf(stderr, "sdbus-caller: call %ld failed: %s\n", i, error.message ? error.message : strerror(-r));
                        sd_bus_error_free(&error);
                        return 1;
                }
                sd_bus_message_unref(reply);
        }
        sd_bus_flush_close_unref(bus);
        printf("done %ld\n", count);
        return 0;
}
