/** A configuration file that cannot be used: the message names file and line. */
export type ConfigErrorCode = 'CONFIG_XML' | 'CONFIG_INVALID' | 'CONFIG_READ' | 'CONFIG_INCLUDE_LOOP';

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  readonly file: string;
  readonly line: number | undefined;

  constructor(code: ConfigErrorCode, file: string, line: number | undefined, message: string) {
    super(`${line === undefined ? file : `${file}:${line}`}: ${message}`);
    this.name = 'ConfigError';
    this.code = code;
    this.file = file;
    this.line = line;
  }
}
