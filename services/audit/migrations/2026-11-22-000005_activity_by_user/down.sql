DROP INDEX activity_user_day;
