import { PassThrough } from 'node:stream';
import winston from 'winston';
import { describe, expect, it } from 'vitest';
import { levelEnabled, SYSLOG_LEVELS } from './logger.js';

// The logger writes its start-up lines without winston (see logger.ts): what it writes and what
// it filters must be what winston, configured as logger.ts configures it, would.
describe('logger before winston is loaded', () => {
  it('knows the syslog levels winston uses', () => {
    expect(SYSLOG_LEVELS).toEqual(winston.config.syslog.levels);
  });

  it('filters levels as winston does, unknown levels included', () => {
    const configured = [...Object.keys(SYSLOG_LEVELS), 'bogus', '', 'constructor', 'toString'];
    for (const level of configured) {
      const logger = winston.createLogger({ levels: winston.config.syslog.levels, level, transports: [new winston.transports.Stream({ stream: new PassThrough() })] });
      for (const given of [...Object.keys(SYSLOG_LEVELS), 'bogus']) {
        expect(levelEnabled(level, given), `${level} ${given}`).toBe(logger.isLevelEnabled(given));
      }
    }
  });
});
